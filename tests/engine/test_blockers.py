"""The blocker named: a lock wait that times out records who held the lock (pid, user, application, state,
transaction age, query with literals masked), in the report's lockRetries, the progress lines and the error."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgwarden.api.policy import MigrationPolicy
from pgwarden.api.reports import Blocker, Outcome
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.engine.postgres.blockers import MASKED, describe_blocker, mask_query

SECRET = "hunter2-Secret"


def test_literals_are_masked_and_comments_left_out() -> None:
    assert mask_query("SELECT * FROM t WHERE a = 'x' AND b = 42 /* note */ -- tail") == (
        "SELECT * FROM t WHERE a = $1 AND b = $2"
    )
    assert mask_query(f"ALTER ROLE bob PASSWORD '{SECRET}'") == "ALTER ROLE bob PASSWORD $1"


def test_a_query_that_does_not_parse_is_masked_wholesale() -> None:
    # What track_activity_query_size cut short: the literal is open, and must not show.
    assert mask_query(f"UPDATE accounts SET pw = '{SECRET}") == MASKED


def test_a_blocker_reads_as_the_person_on_call_needs_it() -> None:
    blocker = Blocker(
        pid=4711,
        user="billing",
        application_name="billing-worker",
        state="idle in transaction",
        transaction_seconds=14 * 60 + 3,
        query="SELECT * FROM t WHERE id = $1",
    )
    assert describe_blocker(blocker) == (
        "pid 4711 (app `billing-worker`, user billing, idle in transaction for 14 min): "
        "SELECT * FROM t WHERE id = $1"
    )


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def idle_in_transaction(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session of `billing-worker` that read table `busy` (ACCESS SHARE) and sits idle in its transaction,
    its last statement carrying a password literal."""
    role = f"blocker_{uuid.uuid4().hex[:12]}"  # roles are the server's, shared by every test database
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE busy (id int)")
        setup.execute(f"CREATE ROLE {role}")
    conn = psycopg.connect(db_url, application_name="billing-worker")
    conn.execute("SELECT count(*) FROM busy WHERE id = 42")
    conn.execute(f"ALTER ROLE {role} PASSWORD '{SECRET}'")
    try:
        yield conn
    finally:
        conn.close()
        with psycopg.connect(db_url, autocommit=True) as setup:
            setup.execute(f"DROP ROLE {role}")


def test_a_migration_behind_an_idle_transaction_gives_up_within_its_bounds_naming_the_blocker(
    db_url: str, tmp_path: Path, idle_in_transaction: psycopg.Connection[tuple[object, ...]]
) -> None:
    directory = write(tmp_path / "m", {"0001_alter.sql": "ALTER TABLE busy ADD COLUMN v int;"})
    lines: list[str] = []

    started = time.monotonic()
    report = migrate(
        db_url,
        MigrateOptions(directory=directory, policy=MigrationPolicy(lock_attempts=3, lock_retry_within="1s")),
        lines.append,
    )
    elapsed = time.monotonic() - started

    assert report.outcome == Outcome.ROLLED_BACK
    assert elapsed < 20, f"3 attempts of 500ms, 1s of pauses, took {elapsed:.1f}s"
    pid = idle_in_transaction.info.backend_pid
    assert [r.attempt for r in report.lock_retries] == [1, 2, 3]
    assert report.lock_retries[-1].gave_up
    for retry in report.lock_retries:
        assert [b.pid for b in retry.blocked_by] == [pid], retry
        blocker = retry.blocked_by[0]
        assert blocker.application_name == "billing-worker"
        assert blocker.state == "idle in transaction"
        assert blocker.query is not None and blocker.query.endswith(" PASSWORD $1")
        assert blocker.transaction_seconds is not None and blocker.transaction_seconds >= 0
    said = "\n".join(lines)
    assert f"blocked by pid {pid} (app `billing-worker`" in said
    assert report.error is not None and f"blocked by pid {pid} (app `billing-worker`" in report.error.message
    everything = report.model_dump_json() + said
    assert SECRET not in everything
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attname = 'v'"
        ).fetchone() == (0,)


def test_a_migration_retries_until_the_blocker_ends_and_its_report_names_it(
    db_url: str, tmp_path: Path, idle_in_transaction: psycopg.Connection[tuple[object, ...]]
) -> None:
    directory = write(tmp_path / "m", {"0001_alter.sql": "ALTER TABLE busy ADD COLUMN v int;"})
    pid = idle_in_transaction.info.backend_pid
    threading.Timer(1.5, idle_in_transaction.rollback).start()

    report = migrate(
        db_url,
        MigrateOptions(directory=directory, policy=MigrationPolicy(lock_attempts=8, lock_retry_within="4s")),
    )

    assert report.outcome == Outcome.SUCCEEDED
    assert report.lock_retries and not any(r.gave_up for r in report.lock_retries)
    named = [b for r in report.lock_retries for b in r.blocked_by]
    assert named and {b.pid for b in named} == {pid}
    assert {b.application_name for b in named} == {"billing-worker"}
    assert SECRET not in report.model_dump_json()
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attname = 'v'"
        ).fetchone() == (1,)


def test_a_blocker_whose_application_name_carries_a_connection_string_is_named_without_its_password(
    db_url: str, tmp_path: Path
) -> None:
    """Someone else's session, named by its owner after the URL it was given: the name is theirs to choose, so it
    is foreign text, redacted where it enters like a query."""
    directory = write(tmp_path / "m", {"0001_alter.sql": "ALTER TABLE busy ADD COLUMN v int;"})
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE busy (id int)")
    application = f"etl postgresql://loader:{SECRET}@warehouse:5432/sales"
    with psycopg.connect(db_url, application_name=application) as holder:
        holder.execute("SELECT count(*) FROM busy")
        lines: list[str] = []
        report = migrate(
            db_url,
            MigrateOptions(
                directory=directory, policy=MigrationPolicy(lock_attempts=2, lock_retry_within="1s")
            ),
            lines.append,
        )
        holder.rollback()

    assert report.outcome == Outcome.ROLLED_BACK
    names = {b.application_name for r in report.lock_retries for b in r.blocked_by}
    assert names == {"etl postgresql://loader:***@warehouse:5432/sales"}
    assert SECRET not in report.model_dump_json() + "\n".join(lines)
