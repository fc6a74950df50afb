"""Checks are queries (DESIGN.md 3, Checks): a `verify.checks[].sql` is one read-only SELECT that cannot end,
change or write through the transaction it verifies.

Reproduced through the real console script first (`SELECT 2; COMMIT` committed the migration it was meant to
verify and the report said RolledBack); then the validation rules on their own, and the savepoint that runs
a check read-only, on the oldest and the newest server.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import history, json_report, migrations_dir, query, run_pgwarden
from pgwarden.api.verify import Check, VerifySpec
from pgwarden.engine.migrate.verify import refused_checks, run_check, validate_check_sql

MIGRATION = {
    "0001_items.sql": "CREATE TABLE items (id int PRIMARY KEY);\nINSERT INTO items VALUES (1), (2);\n"
}


def verify_file(tmp_path: Path, sql: str, equals: object = 1) -> Path:
    path = tmp_path / "verify.yaml"
    quoted = sql.replace("'", "''")
    path.write_text(f"checks:\n  - name: sneaky\n    sql: '{quoted}'\n    equals: {equals}\n")
    return path


def items_exist(url: str) -> bool:
    return bool(query(url, "SELECT to_regclass('public.items') IS NOT NULL"))


# --- through the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "check_sql",
    [
        "SELECT 2; COMMIT",
        "COMMIT; SELECT 1",
        "SELECT 1; ROLLBACK",
        "SELECT 1; PREPARE TRANSACTION 'x'",
    ],
)
def test_a_check_that_ends_the_transaction_never_commits_the_migration(
    db_url: str, tmp_path: Path, check_sql: str
) -> None:
    """The check must not be able to commit the migration it verifies, whatever the run does with it."""
    directory = migrations_dir(tmp_path / "m", extra=MIGRATION)

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--verify", verify_file(tmp_path, check_sql), "--json"
    )

    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert not items_exist(db_url), "the check committed the migration"
    assert [v for v, _type, ok in history(db_url) if ok and v == "0001"] == []
    if result.returncode == 1:  # verification failed and the run was undone, truthfully
        report = json_report(result)
        assert report["outcome"] == "RolledBack"
        failed = [c for c in report["verification"]["checks"] if c["name"] == "sneaky"]
        assert failed and not failed[0]["passed"]
        assert "one read-only SELECT" in failed[0]["message"]


def test_a_check_that_is_not_one_select_is_refused_before_anything_changes(
    db_url: str, tmp_path: Path
) -> None:
    directory = migrations_dir(tmp_path / "m", extra=MIGRATION)

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--verify", verify_file(tmp_path, "SELECT 2; COMMIT"), "--json"
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "sneaky" in result.stderr + result.stdout
    assert not items_exist(db_url)
    assert history(db_url) == []


def test_a_check_calling_a_function_that_writes_fails_instead_of_writing(db_url: str, tmp_path: Path) -> None:
    """A volatile function hides its writes from the parser; the read-only savepoint stops them at run time."""
    directory = migrations_dir(
        tmp_path / "m",
        extra={
            **MIGRATION,
            "0002_sneaky.sql": "CREATE TABLE audit (n int);\n"
            "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS $$ INSERT INTO audit VALUES (1) RETURNING 1 $$;\n",
        },
    )

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--verify", verify_file(tmp_path, "SELECT sneaky()"), "--json"
    )

    assert result.returncode == 1, result.stdout + result.stderr
    report = json_report(result)
    assert report["outcome"] == "RolledBack"
    [check] = [c for c in report["verification"]["checks"] if c["name"] == "sneaky"]
    assert not check["passed"]
    assert "read-only" in check["message"]
    assert not items_exist(db_url)


def test_a_check_that_is_one_select_still_passes(db_url: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", extra=MIGRATION)
    check = "WITH c AS (SELECT count(*) AS n FROM items) SELECT n FROM c;"

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--verify", verify_file(tmp_path, check, 2), "--json"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert json_report(result)["verification"]["passed"] is True
    assert items_exist(db_url)


# --- the rule, on its own ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check_sql", "reason"),
    [
        ("SELECT 2; COMMIT", "2 statements"),
        ("COMMIT", "transaction control"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("", "empty"),
        ("-- nothing here", "empty"),
        ("SELECT (", "cannot parse"),
        ("WITH gone AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM gone", "DELETE"),
        ("WITH n AS (INSERT INTO items VALUES (9) RETURNING id) SELECT id FROM n", "INSERT"),
        ("WITH u AS (UPDATE items SET id = 0 RETURNING 1) SELECT 1", "UPDATE"),
        ("SELECT count(*) INTO copy FROM items", "SELECT INTO"),
        ("SELECT id FROM items FOR UPDATE", "FOR UPDATE/SHARE"),
        ("SELECT (SELECT id FROM items LIMIT 1 FOR SHARE)", "FOR UPDATE/SHARE"),
        ("SELECT 1 UNION SELECT id FROM items FOR NO KEY UPDATE", "FOR UPDATE/SHARE"),
        ("UPDATE items SET id = 1", "UPDATE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE AS"),
        ("EXPLAIN ANALYZE DELETE FROM items", "EXPLAIN"),
        ("SET transaction_read_only = off", "VARIABLE SET"),
        ("DO $$ BEGIN COMMIT; END $$", "DO"),
        ("CALL tidy_up()", "CALL"),
        ("SELECT pg_advisory_unlock_all()", "pg_advisory_unlock_all"),
        ("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend"),
        ("SELECT dblink_exec('dbname=x', 'DROP TABLE items')", "dblink_exec"),
    ],
)
def test_what_is_not_one_read_only_select_is_refused_with_the_reason(check_sql: str, reason: str) -> None:
    refused = validate_check_sql(check_sql)

    assert refused is not None
    assert refused.startswith("a check must be one read-only SELECT")
    assert reason in refused


@pytest.mark.parametrize(
    "check_sql",
    [
        "SELECT 1",
        "SELECT count(*) FROM items;",
        "select count(*) from items where id in (select id from items)",
        "WITH c AS (SELECT count(*) AS n FROM items) SELECT n FROM c",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT max(n) FROM r",
        "VALUES (1)",
        "TABLE items",
        "SELECT 'a; COMMIT; b'",
        "SELECT $$ COMMIT $$",
        "-- a comment first\nSELECT 1 /* and after */",
    ],
)
def test_a_plain_query_is_accepted(check_sql: str) -> None:
    assert validate_check_sql(check_sql) is None


def test_refused_checks_names_each_check_that_may_not_run() -> None:
    spec = VerifySpec(
        checks=[
            Check(name="fine", sql="SELECT 1", equals=1),
            Check(name="commits", sql="SELECT 1; COMMIT", equals=1),
            Check(name="locks", sql="SELECT 1 FROM pg_class FOR UPDATE", equals=1),
        ]
    )

    refused = refused_checks(spec)

    assert len(refused) == 2
    assert refused[0].startswith("check 'commits': a check must be one read-only SELECT")
    assert refused[1].startswith("check 'locks': ")
    assert refused_checks(VerifySpec()) == []


# --- how a check runs: a read-only savepoint, rolled back, on both servers --------------------------


@pytest.fixture
def open_run(any_pg: LocalPostgres) -> psycopg.Connection[tuple[object, ...]]:
    """A connection in the middle of a run: autocommit with an explicit BEGIN and a first write, as migrate does."""
    conn = psycopg.connect(any_pg.create_database(), autocommit=True)
    conn.execute("CREATE TABLE items (id int PRIMARY KEY); CREATE TABLE audit (n int)")
    conn.execute(
        "CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (1);"
        " RETURN 1; END $$"
    )
    conn.execute("BEGIN")
    conn.execute("INSERT INTO items VALUES (1)")
    return conn


def still_open_and_writable(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
    conn.execute("INSERT INTO items VALUES (2)")  # the migration can go on writing
    assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)


def test_a_check_that_writes_through_a_function_fails_and_writes_nothing(
    open_run: psycopg.Connection[tuple[object, ...]],
) -> None:
    with open_run as conn:
        result = run_check(conn, Check(name="sneaky", sql="SELECT sneaky()", equals=1))

        assert not result.passed
        assert result.message is not None and "read-only" in result.message
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (0,)
        still_open_and_writable(conn)


def test_a_check_cannot_turn_read_only_off(open_run: psycopg.Connection[tuple[object, ...]]) -> None:
    with open_run as conn:
        check = Check(
            name="unlock",
            sql="SELECT set_config('transaction_read_only', 'off', true), sneaky()",
            equals=1,
        )
        result = run_check(conn, check)

        assert not result.passed
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (0,)
        still_open_and_writable(conn)


def test_a_check_called_directly_with_two_statements_never_reaches_the_server(
    open_run: psycopg.Connection[tuple[object, ...]],
) -> None:
    with open_run as conn:
        result = run_check(conn, Check(name="commits", sql="SELECT 1; COMMIT", equals=1))

        assert not result.passed
        assert result.message is not None and result.message.startswith("refused: ")
        still_open_and_writable(conn)


def test_a_check_the_server_would_split_differently_still_runs_as_one_statement(
    open_run: psycopg.Connection[tuple[object, ...]],
) -> None:
    """With standard_conforming_strings off the server reads `'\\'` as an open string, so this text is
    one SELECT to the parser but `SELECT ...; COMMIT; SELECT 1` to the server: the extended protocol
    refuses to run more than one statement."""
    with open_run as conn:
        conn.execute("SET LOCAL standard_conforming_strings = off")
        sneaky = "SELECT '\\' || '; COMMIT; SELECT 1 --'"
        assert validate_check_sql(sneaky) is None

        result = run_check(conn, Check(name="split", sql=sneaky, equals=1))

        assert not result.passed
        conn.execute("SET LOCAL standard_conforming_strings = on")
        still_open_and_writable(conn)


def test_a_failing_check_query_leaves_the_transaction_usable(
    open_run: psycopg.Connection[tuple[object, ...]],
) -> None:
    with open_run as conn:
        result = run_check(conn, Check(name="boom", sql="SELECT 1 / 0", equals=1))

        assert not result.passed
        assert result.message == "query failed: division by zero"
        still_open_and_writable(conn)


def test_a_passing_check_returns_its_value_and_changes_nothing(
    open_run: psycopg.Connection[tuple[object, ...]],
) -> None:
    with open_run as conn:
        result = run_check(conn, Check(name="count", sql="SELECT count(*) FROM items", at_least=1))

        assert result.passed, result
        assert result.actual == "1"
        still_open_and_writable(conn)
