"""Progress of long statements under faults: the session that reads pg_stat_progress_create_index for the
progress lines is ended mid-statement. Progress is a look at the run, never part of it: the migration still
commits, its report says Succeeded, and progress lines go on (without the index-build detail)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import history, migrations_dir, run_pgwarden
from faults import GRACE, Injector, Pgwarden, assert_no_secret, json_report

BASE = {"0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY);\nINSERT INTO orders VALUES (1), (2);\n"}
PROGRESS_QUERY = "pg_stat_progress_create_index"


def progress_sessions(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND strpos(query, %s) > 0",
            (PROGRESS_QUERY,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_the_progress_session_ended_mid_statement_does_not_touch_the_run(
    canary_pg: LocalPostgres, tmp_path: Path, inject: Injector
) -> None:
    url = canary_pg.create_database()
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    assert run_pgwarden("migrate", url, "--dir", directory).returncode == 0
    (directory / "0002_slow.sql").write_text("ALTER TABLE orders ADD COLUMN flag int;\nSELECT pg_sleep(9);\n")

    with Pgwarden("migrate", url, "--dir", directory, "--json") as run:
        run.wait_until(lambda: bool(progress_sessions(url)), "a progress report on the slow statement")
        inject.record("pg_terminate_backend")
        with psycopg.connect(url, autocommit=True) as conn:
            for pid in progress_sessions(url):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        cut = len(run.stderr.splitlines())
        cut_at = time.monotonic()
        result = run.finish(timeout=GRACE)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "unexpected error" not in output, output
    report = json_report(result)
    assert report["outcome"] == "Succeeded" and [a["version"] for a in report["applied"]] == ["0002"]
    assert ("0002", "SQL", True) in history(url)
    if time.monotonic() - cut_at > 6:  # a report fell due after the cut: it was still printed
        assert any("running for" in line for line in result.stderr.splitlines()[cut:]), result.stderr
    assert_no_secret(canary_pg.password, result.stdout, result.stderr)
