"""The migration runner against a real server: what it applies, what it refuses, and what it undoes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from pgwarden.api.policy import MigrationPolicy, RollbackStrategy
from pgwarden.api.reports import Outcome, RollbackOutcome
from pgwarden.api.verify import Check, VerifySpec
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.engine.recovery.locks import lock_key
from pgwarden.errors import BadInput

DEMO = Path(__file__).resolve().parents[2] / "migrations" / "demo"


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def user_objects(url: str) -> dict[str, object]:
    """Everything a rollback must restore: tables, functions, triggers, indexes and row counts."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarden')"
            " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
        ).fetchall()
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for (t,) in tables}
        functions = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarden') ORDER BY 1"
        ).fetchall()
        triggers = conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1").fetchall()
        indexes = conn.execute(
            "SELECT indexrelid::regclass::text, indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'pg_toast', 'pgwarden')"
            " ORDER BY 1"
        ).fetchall()
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%'"
            " AND nspname NOT IN ('information_schema', 'pgwarden')"
            " ORDER BY 1"
        ).fetchall()
    return {
        "tables": counts,
        "functions": functions,
        "triggers": triggers,
        "indexes": indexes,
        "schemas": schemas,
    }


def history_versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version FROM pgwarden.schema_history WHERE success ORDER BY installed_rank"
        )
        return [v for (v,) in rows.fetchall()]


def thirteen_tables(fail_last: bool) -> dict[str, str]:
    """A 13-migration run: tables with rows, a function, a trigger; optionally a last one that fails."""
    files = {
        "0001_base.sql": """
            CREATE TABLE t01 (id int PRIMARY KEY, touched timestamptz);
            INSERT INTO t01 SELECT g, NULL FROM generate_series(1, 500) g;
            CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN
              NEW.touched := now();  -- a semicolon inside the body; and a $$ too
              RETURN NEW;
            END
            $fn$;
            CREATE TRIGGER t01_touch BEFORE UPDATE ON t01 FOR EACH ROW EXECUTE FUNCTION touch();
        """
    }
    for number in range(2, 14):
        files[f"{number:04d}_table_{number}.sql"] = (
            f"CREATE TABLE t{number:02d} (id int PRIMARY KEY, parent int REFERENCES t01(id));\n"
            f"INSERT INTO t{number:02d} SELECT g, g FROM generate_series(1, {number * 10}) g;\n"
        )
    if fail_last:
        files["0013_table_13.sql"] += "INSERT INTO t13 VALUES (1, 1);  -- duplicate key: fails the run\n"
    return files


def test_a_run_applies_every_migration_and_counts_rows_before_and_after(db_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", thirteen_tables(fail_last=False))

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome == Outcome.SUCCEEDED
    assert [a.version for a in report.applied] == [f"{n:04d}" for n in range(1, 14)]
    assert report.tables.before == 0 and report.tables.after == 13
    assert report.rows.before == 0
    assert report.rows.after == 500 + sum(n * 10 for n in range(2, 14))
    assert history_versions(db_url) == [f"{n:04d}" for n in range(1, 14)]


def test_failed_last_migration_rolls_back_all_thirteen_with_functions_and_triggers(
    db_url: str, tmp_path: Path
) -> None:
    before = user_objects(db_url)
    directory = write(tmp_path / "m", thirteen_tables(fail_last=True))

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome == Outcome.ROLLED_BACK
    assert report.rollback is not None and report.rollback.outcome == RollbackOutcome.SUCCEEDED
    assert report.error is not None and report.error.migration == "0013"
    assert "duplicate key" in report.error.message
    assert report.applied == []
    assert user_objects(db_url) == before  # no table, function, trigger or history schema left


def test_failing_verification_check_rolls_back_the_run_with_down_scripts(db_url: str) -> None:
    """The demo set commits 0001-0004 before its CONCURRENTLY index, so only down scripts can undo it all."""
    before = user_objects(db_url)
    verify = VerifySpec(
        checks=[Check(name="customers seeded", sql="SELECT count(*) FROM shop.customers", equals=1)]
    )

    report = migrate(db_url, MigrateOptions(directory=DEMO, verify=verify, rollback=RollbackStrategy.DOWN))

    assert report.outcome == Outcome.ROLLED_BACK
    assert report.verification is not None and not report.verification.passed
    failed = [c for c in report.verification.checks if not c.passed]
    assert [c.name for c in failed] == ["customers seeded"] and failed[0].actual == "2000"
    assert user_objects(db_url) == before


def test_failing_check_in_a_single_transaction_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    before = user_objects(db_url)
    directory = write(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (id int); INSERT INTO a SELECT generate_series(1, 10);",
            "0002_b.sql": "CREATE TABLE b (id int);",
        },
    )
    verify = VerifySpec(checks=[Check(name="b has rows", sql="SELECT count(*) FROM b", at_least=1)])

    report = migrate(db_url, MigrateOptions(directory=directory, verify=verify))

    assert report.outcome == Outcome.ROLLED_BACK
    assert user_objects(db_url) == before


def test_dollar_quoted_bodies_and_do_blocks_run_whole(db_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "m",
        {
            "0001_fn.sql": """
                CREATE TABLE notes (id serial PRIMARY KEY, body text);
                CREATE FUNCTION add_note(t text) RETURNS int LANGUAGE plpgsql AS $$
                DECLARE new_id int;
                BEGIN
                  INSERT INTO notes (body) VALUES (t || ';') RETURNING id INTO new_id;
                  RETURN new_id;
                END $$;
                DO $do$
                BEGIN
                  FOR i IN 1..3 LOOP PERFORM add_note('note ' || i); END LOOP;
                END $do$;
                INSERT INTO notes (body) VALUES ('it''s; still one statement');
            """
        },
    )

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome == Outcome.SUCCEEDED
    with psycopg.connect(db_url) as conn:
        bodies = [b for (b,) in conn.execute("SELECT body FROM notes ORDER BY id").fetchall()]
    assert bodies == ["note 1;", "note 2;", "note 3;", "it's; still one statement"]


def test_create_index_concurrently_runs_outside_a_transaction(db_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (id int, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;",
            "0002_idx.sql": "CREATE INDEX CONCURRENTLY t_v_idx ON t (v);",
        },
    )

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome == Outcome.SUCCEEDED
    assert [a.transactional for a in report.applied] == [True, False]
    assert ("t_v_idx", True) in user_objects(db_url)["indexes"]  # type: ignore[operator]


def test_failed_create_index_concurrently_leaves_no_invalid_index(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "CREATE TABLE t (id int, v int); INSERT INTO t SELECT g, 1 FROM generate_series(1, 100) g"
        )
    directory = write(
        tmp_path / "m", {"0001_unique.sql": "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);"}
    )

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome != Outcome.SUCCEEDED
    assert report.error is not None and "could not create unique index" in report.error.message
    assert user_objects(db_url)["indexes"] == []


def test_down_strategy_undoes_committed_groups_newest_first(db_url: str, tmp_path: Path) -> None:
    before = user_objects(db_url)
    directory = write(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (id int, v int);",
            "0001_t.down.sql": "DROP TABLE t;",
            "0002_idx.sql": "CREATE INDEX CONCURRENTLY t_v_idx ON t (v);",
            "0002_idx.down.sql": "DROP INDEX CONCURRENTLY t_v_idx;",
            "0003_bad.sql": "ALTER TABLE t ADD COLUMN w int; SELECT 1/0;",
        },
    )

    report = migrate(db_url, MigrateOptions(directory=directory, rollback=RollbackStrategy.DOWN))

    assert report.outcome == Outcome.ROLLED_BACK
    assert report.rollback is not None and report.rollback.outcome == RollbackOutcome.SUCCEEDED
    assert "0002, 0001" in (report.rollback.message or "")
    after = user_objects(db_url)
    assert after["tables"] == before["tables"] and after["indexes"] == before["indexes"]
    assert history_versions(db_url) == []


def test_transaction_strategy_reports_what_it_could_not_undo(db_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (id int, v int);",
            "0002_idx.sql": "CREATE INDEX CONCURRENTLY t_v_idx ON t (v);",
            "0003_bad.sql": "SELECT 1/0;",
        },
    )

    report = migrate(db_url, MigrateOptions(directory=directory))

    assert report.outcome == Outcome.FAILED
    assert report.rollback is not None and report.rollback.outcome == RollbackOutcome.FAILED
    assert "0001, 0002" in (report.rollback.message or "")
    assert report.current_version == "0002"
    assert [a.version for a in report.applied] == ["0001", "0002"]


def test_destructive_statement_is_refused_before_anything_changes(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE keep (id int); INSERT INTO keep VALUES (1)")
    before = user_objects(db_url)
    directory = write(
        tmp_path / "m", {"0001_new.sql": "CREATE TABLE x (id int);", "0002_drop.sql": "DROP TABLE keep;"}
    )

    with pytest.raises(BadInput, match=r"0002_drop.sql:1 DROP TABLE keep.*allow-destructive"):
        migrate(db_url, MigrateOptions(directory=directory))
    assert user_objects(db_url) == before

    allowed = migrate(
        db_url, MigrateOptions(directory=directory, policy=MigrationPolicy(allow_destructive=True))
    )
    assert allowed.outcome == Outcome.ROLLED_BACK  # the loss of keep's row is caught by verification
    allowed = migrate(
        db_url,
        MigrateOptions(
            directory=directory,
            policy=MigrationPolicy(allow_destructive=True),
            verify=VerifySpec(allow_row_loss_in=["keep"]),
        ),
    )
    assert allowed.outcome == Outcome.SUCCEEDED


def test_an_edited_applied_migration_is_refused(db_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})
    migrate(db_url, MigrateOptions(directory=directory))
    write(directory, {"0001_t.sql": "CREATE TABLE t (id bigint);", "0002_u.sql": "CREATE TABLE u (id int);"})

    with pytest.raises(BadInput, match="changed after it was applied"):
        migrate(db_url, MigrateOptions(directory=directory))
    assert history_versions(db_url) == ["0001"]


def test_malformed_file_names_are_refused(db_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"0001_ok.sql": "SELECT 1;", "add_users.sql": "SELECT 1;"})

    with pytest.raises(BadInput, match=r"add_users\.sql"):
        migrate(db_url, MigrateOptions(directory=directory))


def test_two_concurrent_migrators_apply_each_migration_once(db_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "m",
        {
            "0001_slow.sql": "CREATE TABLE t (id int); SELECT pg_sleep(1);",
            "0002_rows.sql": "INSERT INTO t SELECT generate_series(1, 100);",
        },
    )
    outcomes: list[Outcome] = []

    def run() -> None:
        outcomes.append(migrate(db_url, MigrateOptions(directory=directory)).outcome)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()

    assert outcomes == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert history_versions(db_url) == ["0001", "0002"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)


def test_lock_timeout_is_retried_until_the_lock_is_free(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id int)")
    directory = write(tmp_path / "m", {"0001_alter.sql": "ALTER TABLE busy ADD COLUMN v int;"})
    blocker = psycopg.connect(db_url)
    blocker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
    threading.Timer(1.5, blocker.rollback).start()

    report = migrate(
        db_url, MigrateOptions(directory=directory, policy=MigrationPolicy(lock_timeout="200ms"))
    )
    blocker.close()

    assert report.outcome == Outcome.SUCCEEDED
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attname = 'v'"
        ).fetchone() == (1,)


def test_a_hand_made_change_is_reported_as_drift_on_the_next_run(db_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})
    first = migrate(db_url, MigrateOptions(directory=directory))
    assert first.drift is not None and not first.drift.detected
    with psycopg.connect(db_url) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN sneaky text")

    second = migrate(db_url, MigrateOptions(directory=directory))

    assert second.drift is not None and second.drift.detected
    assert any("sneaky" in d.object for d in second.drift.differences)


def test_plan_changes_nothing(db_url: str) -> None:
    before = user_objects(db_url)

    report = migrate(db_url, MigrateOptions(directory=DEMO, plan_only=True))

    assert report.pending == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert user_objects(db_url) == before


def test_target_and_baseline(db_url: str) -> None:
    up_to_two = migrate(db_url, MigrateOptions(directory=DEMO, target="0002"))
    assert [a.version for a in up_to_two.applied] == ["0001", "0002"]

    rest = migrate(db_url, MigrateOptions(directory=DEMO))
    assert [a.version for a in rest.applied] == ["0003", "0004", "0005", "0006"]


def test_baseline_records_without_running(pg_oldest: object, tmp_path: Path) -> None:
    url = pg_oldest.create_database()  # type: ignore[attr-defined]
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE legacy (id int)")
    directory = write(
        tmp_path / "m",
        {"0001_legacy.sql": "CREATE TABLE legacy (id int);", "0002_more.sql": "CREATE TABLE more (id int);"},
    )

    report = migrate(url, MigrateOptions(directory=directory, baseline="0001"))

    assert report.outcome == Outcome.SUCCEEDED
    assert report.baselined == ["0001"] and [a.version for a in report.applied] == ["0002"]
    assert history_versions(url) == ["0001", "0002"]


@pytest.mark.parametrize("query", ["SELECT generate_series(1, 3)", "SELECT 1, 2"])
def test_a_check_returning_more_than_one_value_fails(db_url: str, tmp_path: Path, query: str) -> None:
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})
    verify = VerifySpec(checks=[Check(name="one value", sql=query, equals=1)])

    report = migrate(db_url, MigrateOptions(directory=directory, verify=verify))

    assert report.outcome == Outcome.ROLLED_BACK
    assert report.verification is not None
    assert "single value" in (report.verification.checks[-1].message or "")


def test_kubernetes_style_timeouts_are_accepted_and_nonsense_is_refused(db_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})

    with pytest.raises(ValidationError, match="statement_timeout"):  # the one duration grammar, in the model
        MigrationPolicy(statement_timeout="soon")
    report = migrate(
        db_url,
        MigrateOptions(
            directory=directory, policy=MigrationPolicy(lock_timeout="2s", statement_timeout="10m")
        ),
    )

    assert report.outcome == Outcome.SUCCEEDED


@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
def test_an_unbounded_timeout_is_refused_before_anything_changes(
    db_url: str, tmp_path: Path, setting: str
) -> None:
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})

    with pytest.raises(BadInput, match=f"{setting} 0 would let the run wait for ever"):
        migrate(db_url, MigrateOptions(directory=directory, policy=MigrationPolicy(**{setting: "0"})))

    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('t'), to_regclass('pgwarden.schema_history')").fetchone() == (
            None,
            None,
        )


def test_the_migrator_lock_in_the_maintenance_database_holds_off_a_second_migrator(
    db_url: str, tmp_path: Path
) -> None:
    """While a restore swaps the database by rename, only the lock in `postgres` is held; it must suffice."""
    directory = write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);"})
    dbname = db_url.rsplit("/", 1)[1]
    maintenance = db_url.rsplit("/", 1)[0] + "/postgres"
    holder = psycopg.connect(maintenance, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("pgwarden", dbname),))
    reports = []
    runner = threading.Thread(
        target=lambda: reports.append(migrate(db_url, MigrateOptions(directory=directory)))
    )
    runner.start()
    time.sleep(1.5)

    assert reports == [] and runner.is_alive(), "the second migrator must wait for the maintenance lock"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    holder.close()
    runner.join(timeout=30)

    assert [r.outcome for r in reports] == [Outcome.SUCCEEDED]
