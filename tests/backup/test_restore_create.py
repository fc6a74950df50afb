"""`restore --create` never leaves a half-restored database under the name asked for (issue 9): it restores
into `<name>_pgw_restoring_<id>` and renames that only once the restored rows matched the backup.

Reproduced first: a `restore --create` killed (SIGKILL) while pg_restore ran left the database under its
final name, and the rerun was refused with "database … already exists" (exit 2).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from backup_support import BackupPlace, run_cli
from pgwarden_testing import localpg
from psycopg import sql

from pgwarden.engine.restore.restore import RESTORING_MARK, restoring_name

CLI = "from pgwarden.cli import entrypoint; entrypoint()"


def databases(pg: localpg.LocalPostgres) -> set[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def copying_into(pg: localpg.LocalPostgres, prefix: str) -> bool:
    """pg_restore is copying table data into a database whose name starts with `prefix`."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE starts_with(datname, %s) AND query LIKE 'COPY %%'", [prefix]
        ).fetchone()
    return row is not None


@pytest.fixture(scope="module")
def bulky_backup(bulky_db: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The location of a backup big enough that pg_restore takes a few seconds."""
    place = tmp_path_factory.mktemp("backups")
    done = run_cli("backup", bulky_db, "--to", str(place), "--compress", "none", "--json")
    assert done.returncode == 0, done.stderr
    location: str = json.loads(done.stdout)["backup"]["location"]
    return location


@pytest.fixture
def killed_mid_restore(pg: localpg.LocalPostgres, bulky_backup: str) -> Iterator[str]:
    """The name of a database whose `restore --create` was SIGKILLed while pg_restore copied data."""
    name = f"r_{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_TEST")}
    run = subprocess.Popen(
        [sys.executable, "-c", CLI, "restore", pg.url(name), "--from", bulky_backup, "--create", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not copying_into(pg, name + RESTORING_MARK):
        assert run.poll() is None and time.monotonic() < deadline, "pg_restore was never seen copying"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    yield name
    with psycopg.connect(pg.url(), autocommit=True) as conn:  # the killed run's debris, and the rerun's
        for (left,) in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [name]):
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(str(left))))


def test_a_killed_create_leaves_only_a_clearly_named_temporary_database_and_the_rerun_succeeds(
    pg: localpg.LocalPostgres, bulky_backup: str, killed_mid_restore: str
) -> None:
    name = killed_mid_restore
    left = databases(pg)
    assert name not in left
    assert [d for d in left if d.startswith(name)] != [], "the killed run's temporary database is named"

    done = run_cli("restore", pg.url(name), "--from", bulky_backup, "--create", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "Succeeded" and report["createdDatabase"] is True
    assert report["rows"] == 400000


def test_a_created_database_gets_its_name_only_after_the_counts_matched_and_no_temporary_one_stays(
    pg: localpg.LocalPostgres, shop_db: str, fs_place: BackupPlace
) -> None:
    backed_up = run_cli("backup", shop_db, "--to", fs_place.uri, "--json", env=fs_place.env)
    location = json.loads(backed_up.stdout)["backup"]["location"]
    name = "ä" * 30  # 60 bytes: the temporary name must be shortened to fit 63 bytes

    done = run_cli("restore", pg.url(name), "--from", location, "--create", "--json", env=fs_place.env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["createdDatabase"] is True
    assert name in databases(pg)
    assert not [d for d in databases(pg) if RESTORING_MARK in d]


def test_the_temporary_name_fits_63_bytes_and_says_what_it_is() -> None:
    for name in ("shop", "x" * 63, "ä" * 31):
        temporary = restoring_name(name)
        assert len(temporary.encode()) <= 63
        assert RESTORING_MARK in temporary and temporary.startswith(name[:20])
    assert restoring_name("shop") != restoring_name("shop")
