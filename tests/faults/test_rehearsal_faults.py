"""`pgwarden migrate --rehearse-from` under faults: the rehearsal's session on its scratch copy ended, the
session that watches its locks ended, the run stopped by SIGTERM. Each ends with exit 1 (143 for SIGTERM),
the real database untouched (history, counts, columns) and no scratch database left; no password printed.
(SIGKILL mid-rehearsal is in test_migrate_faults.py.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import clone_database, history, migrations_dir, table_counts
from faults import (
    GRACE,
    Injector,
    Pgwarden,
    assert_no_secret,
    databases,
    json_report,
    run_pgwarden,
)

BASE = {
    "0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);\n"
    "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g;\n"
}
# ADD COLUMN takes ACCESS EXCLUSIVE on orders and keeps it until COMMIT, through the slow statement after it.
SLOW = "ALTER TABLE orders ADD COLUMN flag int;\nSELECT pg_sleep({seconds});\n"


class Rehearsed:
    """A database at 0001 with a real backup of it, and a migration directory with a slow 0002."""

    def __init__(self, url: str, directory: Path, backups: Path, password: str) -> None:
        self.url, self.directory, self.backups, self.password = url, directory, backups, password
        self.admin = url.rsplit("/", 1)[0] + "/postgres"

    def start(self, *args: str) -> Pgwarden:
        return Pgwarden(
            "migrate", self.url, "--dir", self.directory, "--rehearse-from", self.backups, "--json", *args
        )

    def state(self) -> tuple[object, ...]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
                " WHERE table_name = 'orders'"
            ).fetchone()
        return history(self.url), table_counts(self.url), columns

    def scratch(self) -> set[str]:
        return {name for name in databases(self.admin) if "_pgw_rehearsal_" in name}

    def scratch_sessions(self, fragment: str) -> list[int]:
        """Sessions on a rehearsal's scratch copy whose (last) statement contains `fragment`."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE strpos(datname, '_pgw_rehearsal_') > 0"
                " AND backend_type = 'client backend' AND strpos(query, %s) > 0",
                (fragment,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def sleeping(self) -> Callable[[], bool]:
        """A condition: 0002's slow statement runs on the scratch copy."""
        return lambda: bool(self.scratch_sessions("SELECT pg_sleep("))

    def terminate(self, fragment: str) -> int:
        pids = self.scratch_sessions(fragment)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for pid in pids:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)


@pytest.fixture
def rehearsed(canary_pg: LocalPostgres, tmp_path: Path) -> Rehearsed:
    url = canary_pg.create_database()
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    done = run_pgwarden("migrate", url, "--dir", directory)
    assert done.returncode == 0, done.stderr
    backups = tmp_path / "backups"
    backup = run_pgwarden("backup", url, "--to", backups)
    assert backup.returncode == 0, backup.stderr
    return Rehearsed(clone_database(url, canary_pg.url()), directory, backups, canary_pg.password)


def assert_stopped_before_the_real_run(
    result: CompletedProcess[str], rehearsed: Rehearsed, before: tuple[object, ...]
) -> dict[str, Any]:
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode == 1, f"exit {result.returncode}\n{output}"
    report = json_report(result)
    assert report["outcome"] in ("Failed", "RolledBack"), report
    assert report.get("applied", []) == [], report
    assert rehearsed.state() == before, "the real database changed"
    deadline = time.monotonic() + 30
    while rehearsed.scratch() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rehearsed.scratch() == set(), "a scratch copy outlived the rehearsal"
    assert_no_secret(rehearsed.password, result.stdout, result.stderr)
    return report


def test_the_rehearsals_session_ended_on_its_scratch_copy_stops_the_run_before_the_real_database(
    rehearsed: Rehearsed, inject: Injector
) -> None:
    (rehearsed.directory / "0002_slow.sql").write_text(SLOW.format(seconds=60))
    before = rehearsed.state()

    with rehearsed.start() as run:
        run.wait_until(rehearsed.sleeping(), "the rehearsal applying 0002 on its scratch copy")
        inject.record("pg_terminate_backend")
        assert rehearsed.terminate("SELECT pg_sleep(") == 1
        result = run.finish(timeout=GRACE)

    report = assert_stopped_before_the_real_run(result, rehearsed, before)
    assert report["rehearsal"]["outcome"] == "Failed", report
    assert report["rehearsal"]["error"]["message"], report


def test_a_rehearsal_whose_lock_watch_was_cut_never_says_its_locks_kept_the_limit(
    rehearsed: Rehearsed, inject: Injector
) -> None:
    """0002 holds ACCESS EXCLUSIVE on orders for 4 s, the limit is 1 s: with the session that samples pg_locks
    ended a moment into the hold, the samples no longer show how long it lasted. A rehearsal that could not
    watch its locks to the end cannot vouch for them: it fails rather than let the real run go."""
    (rehearsed.directory / "0002_slow.sql").write_text(SLOW.format(seconds=4))
    before = rehearsed.state()

    with rehearsed.start("--rehearsal-max-lock-hold", "1s") as run:
        run.wait_until(rehearsed.sleeping(), "the rehearsal applying 0002 on its scratch copy")
        inject.record("pg_terminate_backend")
        assert rehearsed.terminate("FROM pg_locks") == 1, "no lock-sampling session on the scratch copy"
        result = run.finish(timeout=GRACE)

    report = assert_stopped_before_the_real_run(result, rehearsed, before)
    rehearsal = report["rehearsal"]
    assert rehearsal["outcome"] == "Failed", rehearsal
    assert "lock" in rehearsal["error"]["message"], rehearsal


def test_sigterm_mid_rehearsal_ends_with_a_report_and_the_real_database_untouched(
    rehearsed: Rehearsed, inject: Injector
) -> None:
    (rehearsed.directory / "0002_slow.sql").write_text(SLOW.format(seconds=60))
    before = rehearsed.state()

    with rehearsed.start() as run:
        run.wait_until(rehearsed.sleeping(), "the rehearsal applying 0002 on its scratch copy")
        inject.signal(run, signal.SIGTERM)
        result = run.finish(timeout=GRACE)

    report = assert_stopped_before_the_real_run(result, rehearsed, before)
    assert "SIGTERM" in report["error"]["message"], report
