"""Reader stalls bounded by design: a statement taking a lock stronger than ROW EXCLUSIVE waits for it at most
the short ddl_lock_timeout per attempt, attempts are retried after jittered pauses spread over a bound, and a
data change keeps the run's longer lock_timeout."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgwarden.api.policy import MigrationPolicy
from pgwarden.api.reports import Outcome
from pgwarden.engine.migrate.files import load_migrations
from pgwarden.engine.migrate.lint import lint_migrations
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.engine.migrate.rewrites import REWRITE_RULE
from pgwarden.engine.migrate.sqlscript import split_statements
from pgwarden.engine.recovery.locks import spread_delays


def test_pauses_share_the_bound_evenly_with_jitter_and_never_vanish() -> None:
    for seed in range(50):
        delays = spread_delays(11, 20.0, random.Random(seed))
        assert len(delays) == 10
        assert sum(delays) <= 20.0
        assert all(1.0 <= delay <= 2.0 for delay in delays), delays  # half to all of a 2 s share
    assert spread_delays(1, 10.0) == []
    assert spread_delays(3, 6.0, random.Random(1)) != spread_delays(3, 6.0, random.Random(2))


@pytest.mark.parametrize(
    ("sql", "strong"),
    [
        ("ALTER TABLE t ADD COLUMN c int", True),
        ("CREATE INDEX i ON t (a)", True),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", True),
        ("DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD d int'; END $$", True),
        ("CREATE INDEX CONCURRENTLY i ON t (a)", False),
        ("REINDEX (CONCURRENTLY) INDEX i", False),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", False),
        ("UPDATE t SET a = 1", False),
        ("INSERT INTO t VALUES (1)", False),
        ("SELECT 1", False),
    ],
)
def test_statements_taking_a_lock_stronger_than_row_exclusive_are_told_apart(sql: str, strong: bool) -> None:
    (statement,) = split_statements(sql)
    assert statement.strong_lock is strong


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_ddl_waits_the_short_timeout_and_the_reader_behind_it_is_not_held_for_the_long_one(
    db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE busy (id int)")
    directory = write(tmp_path / "m", {"0001_alter.sql": "ALTER TABLE busy ADD COLUMN v int;"})
    holder = psycopg.connect(db_url)
    holder.execute("SELECT count(*) FROM busy")  # ACCESS SHARE, held: the ALTER queues behind it
    waits: list[float] = []
    stop = threading.Event()

    def read() -> None:  # a reader that arrives while the ALTER waits queues behind the ALTER
        with psycopg.connect(db_url, autocommit=True) as reader:
            while not stop.is_set():
                started = time.monotonic()
                reader.execute("SELECT count(*) FROM busy")
                waits.append(time.monotonic() - started)
                time.sleep(0.02)

    readers = threading.Thread(target=read)
    readers.start()
    started = time.monotonic()
    policy = MigrationPolicy(
        lock_timeout="30s", ddl_lock_timeout="300ms", lock_attempts=3, lock_retry_within="1s"
    )
    report = migrate(db_url, MigrateOptions(directory=directory, policy=policy))
    elapsed = time.monotonic() - started
    stop.set()
    readers.join()
    holder.close()

    assert report.outcome == Outcome.ROLLED_BACK
    assert [r.attempt for r in report.lock_retries] == [1, 2, 3]
    assert sum(r.delay_seconds for r in report.lock_retries) <= 1.0
    assert elapsed < 20, f"the ALTER waited the 30s lock_timeout, not its 300ms: {elapsed:.1f}s"
    assert waits and max(waits) < 10, f"a reader waited {max(waits):.1f}s behind the ALTER"


def test_a_data_change_waiting_for_a_row_keeps_the_run_lock_timeout(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE rows (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO rows VALUES (1, 0)")
    directory = write(tmp_path / "m", {"0001_update.sql": "UPDATE rows SET v = 1 WHERE id = 1;"})
    holder = psycopg.connect(db_url)
    holder.execute("UPDATE rows SET v = 2 WHERE id = 1")  # a row lock, released after 1.5 s
    threading.Timer(1.5, holder.rollback).start()

    policy = MigrationPolicy(lock_timeout="10s", ddl_lock_timeout="200ms", lock_attempts=1)
    report = migrate(db_url, MigrateOptions(directory=directory, policy=policy))
    holder.close()

    assert report.outcome == Outcome.SUCCEEDED, report.error
    assert report.lock_retries == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT v FROM rows WHERE id = 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("sql", "rewrites"),
    [
        ("ALTER TABLE t ALTER COLUMN a TYPE bigint", "changing the type of column a"),
        ("ALTER TABLE t ADD COLUMN b uuid DEFAULT gen_random_uuid()", "volatile default"),
        ("ALTER TABLE t ADD COLUMN c bigserial", "from a sequence"),
        ("ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS IDENTITY", "from a sequence"),
        ("ALTER TABLE t ADD COLUMN e int GENERATED ALWAYS AS (a * 2) STORED", "stored generated"),
        ("ALTER TABLE t SET UNLOGGED", "SET LOGGED/UNLOGGED"),
        ("VACUUM (FULL) t", "VACUUM FULL"),
        ("CLUSTER t USING t_pkey", "CLUSTER"),
        ("ALTER TABLE t ADD COLUMN f timestamptz DEFAULT now()", None),
        ("ALTER TABLE t ADD COLUMN g int", None),
        ("VACUUM t", None),
    ],
)
def test_the_lint_warns_about_statements_rewriting_a_table_under_access_exclusive(
    sql: str, rewrites: str | None, tmp_path: Path
) -> None:
    directory = write(tmp_path / "m", {"0001_change.sql": f"-- pgwarden:no-transaction\n{sql};\n"})
    files = list(load_migrations(directory))

    found = [f for f in lint_migrations(files).findings if f.rule == REWRITE_RULE]

    if rewrites is None:
        assert found == []
    else:
        assert [(f.file, f.line) for f in found] == [("0001_change.sql", 2)]
        assert rewrites in found[0].message and "ACCESS EXCLUSIVE" in found[0].message
        assert lint_migrations(files, fail_on=[REWRITE_RULE]).refused([REWRITE_RULE]) == tuple(found)
