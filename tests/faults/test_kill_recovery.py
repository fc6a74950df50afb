"""The three failures of issue 18, "Kill it anywhere", each reproduced as the issue found it: the whole
process tree of `pgwarden migrate` SIGKILLed (as when its container dies, the guardian included) at the
run's own pause points, against a real server, and the next run (or `pgwarden recover`) judged by what the
database holds afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import json_report, migrations_dir, run_pgwarden
from faults import (
    Activity,
    Contents,
    Injector,
    Pgwarden,
    accepts_connections,
    hold_lock,
    hold_migrator_lock,
    invalid_indexes,
    scratch_databases,
    wait_sessions_gone,
)

SEED_PROJECT = Path(__file__).parent / "fixtures" / "seed_project"
BASE = {
    "0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);\n"
    "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 2000) g;\n"
}
# 0002 commits in a transaction, 0003 on its own (CONCURRENTLY), then 0004 fails: a split run whose
# rollback must undo two commits.
SPLIT_RUN = {
    "0002_note.sql": "ALTER TABLE orders ADD COLUMN note text;\nUPDATE orders SET note = 'n' WHERE id < 100;\n",
    "0003_total_idx.sql": "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n",
    "0004_fails.sql": "SELECT pg_advisory_xact_lock(4242);\nSELECT 1 / 0;\n",
}


class Database:
    """A database at version 0001 on the test server (superuser access, so a restore rollback may run)."""

    def __init__(self, pg: LocalPostgres, root: Path) -> None:
        self.pg = pg
        self.url = pg.create_database()
        self.name = self.url.rsplit("/", 1)[1].split("?")[0]
        self.server = pg.url()
        self.directory = migrations_dir(root / "migrations", extra=BASE)
        self.backups = root / "backups"
        done = run_pgwarden("migrate", self.url, "--dir", self.directory)
        assert done.returncode == 0, done.stderr

    def with_files(self, files: dict[str, str]) -> Database:
        for name, text in files.items():
            self.directory.joinpath(name).write_text(text)
        return self

    def restore_args(self) -> list[str]:
        return ["--backup-to", str(self.backups), "--rollback", "restore"]

    def migrate(self, *args: str) -> CompletedProcess[str]:
        return run_pgwarden("migrate", self.url, "--dir", self.directory, "--json", *args, timeout=300)

    def start(self, *args: str, pause_at: str | None = None) -> Pgwarden:
        return Pgwarden("migrate", self.url, "--dir", self.directory, "--json", *args, pause_at=pause_at)


@pytest.fixture
def database(pg: LocalPostgres, tmp_path: Path) -> Database:
    return Database(pg, tmp_path)


def killed_at(db: Database, point: str, inject: Injector, *args: str) -> None:
    """Start the run, wait for it at `point`, and kill its whole process tree there."""
    with db.start(*args, pause_at=point) as run:
        run.wait_until(run.stderr_says(f"paused at {point.split('@')[0]}"), point, timeout=180)
        inject.kill_tree(run)
        run.finish()
    wait_sessions_gone(db.url, timeout=120)


def killed_after_two_commits(db: Database, inject: Injector) -> None:
    """Start the split run with a restore rollback and kill its whole process tree while 0004 waits on a
    lock this test holds, after 0002 and 0003 committed."""
    with psycopg.connect(db.url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(4242)")
        with Activity(db.url) as activity, db.start(*db.restore_args()) as run:
            run.wait_until(activity.running("pg_advisory_xact_lock", waiting_on_lock=True), "0004")
            inject.kill_tree(run)
            run.finish()
    wait_sessions_gone(db.url, timeout=120)


def assert_as_before(db: Database, before: Contents) -> None:
    assert accepts_connections(db.server, db.name), f"{db.name} is missing or closed to connections"
    differences = before.differences(Contents.read(db.url))
    assert differences == [], "\n".join(differences)
    assert scratch_databases(db.server, db.name) == []
    assert invalid_indexes(db.url) == []


def report_of(result: CompletedProcess[str]) -> dict[str, Any]:
    assert "unexpected error" not in result.stdout + result.stderr, result.stderr
    return json_report(result)


# --- 1: killed between the two renames of the restore rollback's swap -----------------------------------


def test_killed_between_the_renames_of_the_swap_the_next_run_puts_the_database_back(
    database: Database, inject: Injector
) -> None:
    db = database.with_files(SPLIT_RUN)
    before = Contents.read(db.url)

    killed_at(db, "rollback-renamed-away", inject, *db.restore_args())
    assert not accepts_connections(db.server, db.name)  # what the kill left: no database of that name

    result = db.migrate(*db.restore_args())

    assert_as_before(db, before)
    report = report_of(result)
    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack", report
    recovered = report["recovered"]
    assert recovered["state"] == "Recovered", recovered
    assert any("swap" in line for line in recovered["done"]), recovered


def test_killed_between_the_renames_recover_alone_puts_the_database_back(
    database: Database, inject: Injector
) -> None:
    db = database.with_files(SPLIT_RUN)
    before = Contents.read(db.url)
    killed_at(db, "rollback-renamed-away", inject, *db.restore_args())

    result = run_pgwarden("recover", db.url, "--json")

    assert_as_before(db, before)
    report = report_of(result)
    assert result.returncode == 0, result.stderr
    assert report["recovered"]["state"] == "Recovered", report
    again = report_of(run_pgwarden("recover", db.url, "--json"))
    assert again["recovered"]["state"] == "Clean", again


# --- 2: killed after a group committed, the rollback was forgotten -------------------------------------


def test_killed_during_the_rollback_of_a_split_run_the_next_run_finishes_that_rollback(
    database: Database, inject: Injector
) -> None:
    db = database.with_files(SPLIT_RUN)
    before = Contents.read(db.url)

    killed_at(db, "rollback-restored", inject, *db.restore_args())
    assert Contents.read(db.url).versions == ("0001", "0002", "0003")  # the dead run's two commits

    result = db.migrate(*db.restore_args())

    assert_as_before(db, before)
    report = report_of(result)
    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack", report
    assert report["recovered"]["state"] == "Recovered", report


def test_killed_after_a_commit_the_next_run_continues_it_and_its_failure_undoes_both(
    database: Database, inject: Injector
) -> None:
    db = database.with_files(SPLIT_RUN)
    before = Contents.read(db.url)

    killed_after_two_commits(db, inject)
    assert Contents.read(db.url).versions == ("0001", "0002", "0003")

    result = db.migrate(*db.restore_args())

    assert_as_before(db, before)
    report = report_of(result)
    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack", report
    assert report["rollback"]["outcome"] == "Succeeded", report


def test_recover_undoes_a_dead_run_with_the_backup_it_recorded(database: Database, inject: Injector) -> None:
    db = database.with_files(SPLIT_RUN)
    before = Contents.read(db.url)
    killed_after_two_commits(db, inject)

    result = run_pgwarden("recover", db.url, "--json", timeout=300)

    report = report_of(result)
    assert result.returncode == 0, result.stderr
    assert report["recovered"]["state"] == "Recovered", report
    assert_as_before(db, before)


def test_recover_refuses_with_instructions_when_the_recorded_backup_is_gone(
    database: Database, inject: Injector
) -> None:
    db = database.with_files(SPLIT_RUN)
    killed_at(db, "rollback-restored", inject, *db.restore_args())
    shutil.rmtree(db.backups)
    holds = Contents.read(db.url)

    result = run_pgwarden("recover", db.url, "--json")

    assert result.returncode == 2, result.stderr
    message = report_of(result)["error"]["message"]
    assert str(db.backups) in message and "UPDATE" in message, message
    assert Contents.read(db.url) == holds
    assert scratch_databases(db.server, db.name) == []


# --- 3: a file of many CREATE INDEX CONCURRENTLY statements ----------------------------------------------


def seed_indexes(url: str) -> dict[str, bool]:
    """The seed project's indexes and whether each is valid."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname LIKE 'idx\\_%'"
        ).fetchall()
    return {str(name): bool(valid) for name, valid in rows}


def assert_all_21_indexes_built(report: dict[str, Any], url: str) -> None:
    """The report counts the index file's 21 statements applied, and the database holds 21 valid indexes."""
    (optimise,) = [a for a in report["applied"] if a["version"] == "0002"]
    assert optimise["statements"] == {"applied": 21, "total": 21}, optimise
    indexes = seed_indexes(url)
    assert len(indexes) == 21 and all(indexes.values()), indexes


def test_the_seed_projects_21_concurrent_index_file_runs_as_one_migration(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = pg.create_database()
    directory = shutil.copytree(SEED_PROJECT, tmp_path / "migrations")

    result = run_pgwarden("migrate", url, "--dir", directory, "--json", timeout=300)

    report = report_of(result)
    assert result.returncode == 0, result.stderr
    assert report["currentVersion"] == "0002"
    assert_all_21_indexes_built(report, url)


def test_a_kill_part_way_through_the_index_file_leaves_the_rest_to_the_rerun_and_no_invalid_index(
    pg: LocalPostgres, tmp_path: Path, inject: Injector
) -> None:
    url = pg.create_database()
    directory = shutil.copytree(SEED_PROJECT, tmp_path / "migrations")
    args = ["migrate", url, "--dir", directory, "--json", "--lock-timeout", "60s"]
    assert run_pgwarden(*args, "--target", "0001", timeout=300).returncode == 0  # the tables and their rows

    # An open writer on orders: the 9th build (idx_orders_user) has made its INVALID index and waits for it.
    with hold_lock(url, "orders", "ROW EXCLUSIVE"), Activity(url) as activity, Pgwarden(*args) as run:
        run.wait_until(activity.running("idx_orders_user", waiting_on_lock=True), "the 9th index build")
        assert seed_indexes(url).get("idx_orders_user") is False
        inject.kill_tree(run)
        run.finish()
        inject.terminate_backends(activity)  # the dead run's session, still waiting server-side
    wait_sessions_gone(url)
    left = seed_indexes(url)
    assert left.get("idx_orders_user") is False and len(left) == 9, left  # 8 built, the 9th INVALID

    result = run_pgwarden(*args, timeout=300)

    report = report_of(result)
    assert result.returncode == 0, result.stderr
    assert_all_21_indexes_built(report, url)
    assert invalid_indexes(url) == []


def test_a_recovery_waits_for_a_live_run_and_never_overlaps_it(database: Database, inject: Injector) -> None:
    """The migrator lock keeps a recovery from a run (or another recovery): while another holds it, recover
    touches nothing and says so (exit 1); once it is free, recover undoes the dead run."""
    db = database.with_files({**SPLIT_RUN, "0002_note.down.sql": "ALTER TABLE orders DROP COLUMN note;\n"})
    db.directory.joinpath("0003_total_idx.down.sql").write_text(
        "DROP INDEX CONCURRENTLY IF EXISTS orders_total_idx;\n"
    )
    before = Contents.read(db.url)
    killed_at(db, "group-committed@2", inject, "--rollback", "down")  # 0002 and 0003 committed, then death
    left = Contents.read(db.url)
    assert left.versions == ("0001", "0002", "0003")

    with hold_migrator_lock(db.url):
        busy = run_pgwarden("recover", db.url, "--json", "--lock-wait-timeout", "2s")
        assert busy.returncode == 1, busy.stderr
        assert Contents.read(db.url) == left

    result = run_pgwarden("recover", db.url, "--json")

    assert result.returncode == 0, result.stderr
    assert report_of(result)["recovered"]["state"] == "Recovered"
    assert_as_before(db, before)
