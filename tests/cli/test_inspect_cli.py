"""`pgwarden inspect` from the outside: the real console script, its exit codes, its JSON and its text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres, free_port

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))

SEED = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, total int);
CREATE TABLE "Odd Name" (id int);
CREATE TABLE events (day date NOT NULL) PARTITION BY RANGE (day);
CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2030-01-01');
CREATE VIEW sales.big AS SELECT * FROM sales.orders WHERE total > 10;
INSERT INTO sales.orders SELECT g, g % 50 FROM generate_series(1, 1200) g;
INSERT INTO "Odd Name" SELECT generate_series(1, 3);
INSERT INTO events SELECT date '2024-01-01' + g FROM generate_series(1, 400) g;
"""


def pgwarden(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    return subprocess.run(
        [PGWARDEN, *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def seeded(pg: LocalPostgres) -> tuple[str, str]:
    """A seeded database: its URL and its name."""
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED)
    return url, url.rsplit("/", 1)[1]


def test_json_reports_tables_and_rows_as_numbers_with_per_table_counts(seeded: tuple[str, str]) -> None:
    result = pgwarden("inspect", seeded[0], "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tables"] == 3 and report["rows"] == 1603
    assert report["rowCounts"] == "exact" and report["estimated"] is False
    assert {t["table"]: t["rows"] for t in report["perTable"]} == {
        'public."Odd Name"': 3,
        "public.events": 400,
        "sales.orders": 1200,
    }
    assert report["views"] == 1 and report["partitions"] == 1
    assert len(report["schemaFingerprint"]) == 64
    assert report["outcome"] == "Succeeded"


def test_estimates_are_labelled_as_estimates(seeded: tuple[str, str]) -> None:
    with psycopg.connect(seeded[0], autocommit=True) as conn:
        conn.execute("ANALYZE")
    result = pgwarden("inspect", seeded[0], "--counts", "estimate", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["estimated"] is True and report["rowCounts"] == "estimate"
    assert report["rows"] == 1603


def test_human_output_is_a_summary_and_an_aligned_table(seeded: tuple[str, str]) -> None:
    result = pgwarden("inspect", seeded[0])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "3 tables, 1,603 rows (exact)" in lines
    header = next(line for line in lines if line.startswith("TABLE"))
    orders = next(line for line in lines if line.startswith("sales.orders"))
    assert header.index("ROWS") == orders.index("1,200")


def test_the_database_can_come_from_pg_environment_variables(
    pg: LocalPostgres, seeded: tuple[str, str]
) -> None:
    result = pgwarden("inspect", "--json", env=pg.env(seeded[1]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 1603
    assert pg.password not in result.stdout + result.stderr


def test_no_url_and_no_environment_is_bad_input() -> None:
    result = pgwarden("inspect", "--json")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_a_bad_flag_exits_2() -> None:
    assert pgwarden("inspect", "postgresql://x@127.0.0.1/db", "--counts", "guess").returncode == 2


@pytest.mark.parametrize("problem", ["wrong port", "missing database", "wrong password env"])
def test_the_password_never_shows_when_the_connection_fails(pg: LocalPostgres, problem: str) -> None:
    env = None
    if problem == "wrong port":
        args = [pg.url().replace(f":{pg.port}/", f":{free_port()}/")]
    elif problem == "missing database":
        args = [pg.url("no_such_database")]
    else:
        env = {**pg.env("no_such_database"), "PGPASSWORD": pg.password + "-wrong"}
        args = []
    for extra in ([], ["--json"]):
        result = pgwarden("inspect", *args, *extra, env=env)
        assert result.returncode == 1, result.stderr
        assert pg.password not in result.stdout + result.stderr
        assert "cannot connect" in result.stderr
    assert json.loads(result.stdout)["outcome"] == "Failed"
