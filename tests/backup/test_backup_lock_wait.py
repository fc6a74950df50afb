"""Bounded waits (DESIGN.md 3, Backups): a backup behind another session's ACCESS EXCLUSIVE lock gives up
after its lock wait timeout with a clear failure, and leaves nothing listed or half-written behind.

Reproduced first: `pgwarden backup` behind `LOCK TABLE t IN ACCESS EXCLUSIVE MODE` was still waiting after
40 s (pg_dump ran without --lock-wait-timeout, and the row counts at its snapshot waited as well).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backup_support import BackupPlace, run_cli
from pgwarden_testing import localpg

from pgwarden.api.backup import DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.engine.backup.locks import lock_wait_option, with_lock_timeout
from pgwarden.storage.manifest import list_backups


@pytest.fixture(params=["plain", "indexed"])
def locked_db(any_pg: localpg.LocalPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database whose table `t` another session holds in ACCESS EXCLUSIVE mode for the whole test.

    Plain, pg_dump's own lock waits; with a primary key, reading the schema at the snapshot waits first.
    On the oldest and the newest server."""
    url = any_pg.create_database()
    key = " PRIMARY KEY" if request.param == "indexed" else ""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE free (id int); CREATE TABLE t (id int{key}); INSERT INTO t VALUES (1)")
    holder = psycopg.connect(url)
    holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    try:
        yield url
    finally:
        holder.close()


def test_a_backup_behind_an_exclusive_lock_fails_after_its_lock_wait_timeout_and_lists_nothing(
    locked_db: str, place: BackupPlace
) -> None:
    started = time.monotonic()
    done = run_cli(
        "backup",
        locked_db,
        "--to",
        place.uri,
        "--lock-wait-timeout",
        "2s",
        "--json",
        env=place.env,
        timeout=90,
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 45
    message = json.loads(done.stdout)["error"]["message"]
    assert "--lock-wait-timeout 2s" in message and "another session holds" in message
    assert list_backups(place.open()) == []
    assert place.open().list_objects() == [] and place.open().list_pending() == []


def test_once_the_lock_is_gone_the_same_backup_succeeds(
    pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    done = run_cli("backup", url, "--to", place.uri, "--lock-wait-timeout", "2s", "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 1


@pytest.mark.parametrize("value", ["soon", "10", "-1s", "5 minutes"])
def test_a_malformed_lock_wait_timeout_is_refused_before_anything_runs(
    db_url: str, tmp_path: Path, value: str
) -> None:
    done = run_cli("backup", db_url, "--to", str(tmp_path / "b"), f"--lock-wait-timeout={value}", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "30s" in json.loads(done.stdout)["error"]["message"]
    assert not (tmp_path / "b").exists()


def test_pg_dump_always_gets_a_lock_wait_timeout_unless_told_to_wait_for_ever() -> None:
    assert lock_wait_option(DEFAULT_LOCK_WAIT_TIMEOUT) == ["--lock-wait-timeout=60000"]
    assert lock_wait_option("1m30s") == ["--lock-wait-timeout=90000"]
    assert lock_wait_option("0s") == []


def test_the_counting_sessions_get_the_same_bound_as_lock_timeout_keeping_their_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def options(url: str) -> str:
        return str(psycopg.conninfo.conninfo_to_dict(url)["options"])

    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert options(with_lock_timeout("postgresql://u:pw@h/db", "2s")) == "-c lock_timeout=2000"
    given = "postgresql://u:pw@h/db?options=-c%20search_path%3Dshop"
    assert options(with_lock_timeout(given, "1m")) == "-c search_path=shop -c lock_timeout=60000"
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=64MB")
    assert options(with_lock_timeout("", "2s")) == "-c work_mem=64MB -c lock_timeout=2000"
    assert with_lock_timeout("postgresql://u:pw@h/db", "0s") == "postgresql://u:pw@h/db"
