"""`pgwarden diff` from the outside: exit 0 when identical, 1 when different, 2 on bad input; JSON differences."""

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

DDL = """
CREATE TABLE orders (id int PRIMARY KEY, total integer NOT NULL DEFAULT 0);
CREATE INDEX orders_total_idx ON orders (total);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE FUNCTION double(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x * 2 $$;
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
def twins(pg: LocalPostgres) -> tuple[str, str]:
    urls = (pg.create_database(), pg.create_database())
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DDL)
    return urls


def test_databases_made_by_the_same_ddl_are_identical(twins: tuple[str, str]) -> None:
    result = pgwarden("diff", twins[0], "--against", twins[1], "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] is True and report["differences"] == []
    assert report["fingerprintA"] == report["fingerprintB"]
    human = pgwarden("diff", twins[0], "--against", twins[1])
    assert human.returncode == 0 and human.stdout.startswith("identical")


def test_a_changed_schema_exits_1_and_names_each_difference(twins: tuple[str, str]) -> None:
    with psycopg.connect(twins[1], autocommit=True) as conn:
        conn.execute(
            """
            DROP VIEW big_orders;
            ALTER TABLE orders ALTER COLUMN total TYPE bigint;
            CREATE INDEX orders_id_total_idx ON orders (id, total);
            CREATE OR REPLACE FUNCTION double(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x + x $$;
            """
        )
    result = pgwarden("diff", twins[0], "--against", twins[1], "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] is False
    assert {(d["kind"], d["object"], d["detail"]) for d in report["differences"]} == {
        ("column", "public.orders.total", "type integer -> bigint"),
        ("view", "public.big_orders", "only in A"),
        ("index", "public.orders_id_total_idx", "only in B"),
        ("function", "public.double(x integer)", "definition differs"),
    }
    human = pgwarden("diff", twins[0], "--against", twins[1])
    assert human.returncode == 1
    assert "type integer -> bigint" in human.stdout and "4 differences" in human.stdout


def test_database_a_can_come_from_pg_environment_variables(pg: LocalPostgres, twins: tuple[str, str]) -> None:
    result = pgwarden("diff", "--against", twins[1], "--json", env=pg.env(twins[0].rsplit("/", 1)[1]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["identical"] is True


def test_missing_against_is_bad_input(twins: tuple[str, str]) -> None:
    result = pgwarden("diff", twins[0])
    assert result.returncode == 2
    assert "--against" in result.stderr


def test_an_unreachable_database_fails_without_showing_the_password(
    pg: LocalPostgres, twins: tuple[str, str]
) -> None:
    unreachable = pg.url().replace(f":{pg.port}/", f":{free_port()}/")
    for against in (unreachable, pg.url("no_such_database")):
        result = pgwarden("diff", twins[0], "--against", against, "--json")
        assert result.returncode == 1
        assert json.loads(result.stdout)["outcome"] == "Failed"
        assert "cannot connect" in result.stderr
        assert pg.password not in result.stdout + result.stderr
