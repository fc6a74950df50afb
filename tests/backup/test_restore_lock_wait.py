"""Bounded waits for restores (issue 9): a session holding even ACCESS SHARE on a table `restore --clean`
replaces no longer keeps the restore waiting for ever. pg_restore is stopped once it waited longer than
--lock-wait-timeout, the failure names the blocking session and what to do, and the single-transaction
restore leaves the database as it was.

Reproduced first: with `LOCK TABLE t IN ACCESS SHARE MODE` held by another session, `pgwarden restore
--clean` was still waiting after 150 s (the archive sets lock_timeout = 0 itself).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest
from backup_support import BackupPlace, run_cli
from pgwarden_testing import localpg

from pgwarden.engine.restore.locks import LockWait, overdue


@pytest.fixture
def backed_up(pg: localpg.LocalPostgres, fs_place: BackupPlace) -> Iterator[tuple[str, str]]:
    """A database with a backup of it in `fs_place`, and one row added since: (url, backup location)."""
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
    done = run_cli("backup", url, "--to", fs_place.uri, "--json", env=fs_place.env)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (101)")
    yield url, json.loads(done.stdout)["backup"]["location"]


def rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_restore_behind_a_lock_stops_after_its_lock_wait_timeout_and_names_the_blocker(
    backed_up: tuple[str, str], fs_place: BackupPlace, jobs: int
) -> None:
    url, location = backed_up
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE t IN ACCESS SHARE MODE")
        blocker = holder.info.backend_pid
        started = time.monotonic()
        done = run_cli(
            "restore",
            url,
            "--from",
            location,
            "--clean",
            "--jobs",
            str(jobs),
            "--lock-wait-timeout",
            "2s",
            "--json",
            env=fs_place.env,
            timeout=90,
        )
        elapsed = time.monotonic() - started
        holder.rollback()

    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 30, f"the restore waited {elapsed:.0f}s behind a 2s lock wait timeout"
    report = json.loads(done.stdout)
    assert report["outcome"] == "Failed"
    message = report["error"]["message"]
    assert "--lock-wait-timeout 2s" in message and str(blocker) in message, message
    assert "--terminate-connections" in message, message
    if jobs == 1:
        assert "rolled back" in message, message
        assert rows(url) == 101, "the single-transaction restore changed the database"
    else:
        assert "partly restored" in message, message


def test_a_malformed_lock_wait_timeout_is_refused_before_anything_runs(
    backed_up: tuple[str, str], fs_place: BackupPlace
) -> None:
    url, location = backed_up
    done = run_cli(
        "restore", url, "--from", location, "--clean", "--lock-wait-timeout", "soon", env=fs_place.env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--lock-wait-timeout: 'soon' is not a duration" in done.stderr
    assert rows(url) == 101


def test_a_session_is_overdue_only_after_waiting_the_whole_limit_without_a_break() -> None:
    first_seen: dict[int, float] = {}
    assert overdue(first_seen, {10: [7]}, 100.0, 2.0) is None
    assert overdue(first_seen, {}, 101.0, 2.0) is None  # it got its lock: the clock starts afresh
    assert overdue(first_seen, {10: [7]}, 102.0, 2.0) is None
    assert overdue(first_seen, {10: [7]}, 103.9, 2.0) is None
    assert overdue(first_seen, {10: [7, 11], 11: [7]}, 104.0, 2.0) == LockWait(waiting=(10,), blockers=(7,))
