"""Splitting and classifying migration scripts: what runs as one statement, in or out of a transaction."""

from __future__ import annotations

import pytest

from pgwarden.engine.migrate.sqlscript import (
    Directives,
    ScriptSyntaxError,
    UnknownDirective,
    UnsupportedStatement,
    parse_directives,
    parse_script,
    split_statements,
)


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def only(sql: str) -> str | None:
    (statement,) = split_statements(sql)
    return statement.destructive


# Splitting


def test_statements_keep_their_exact_text_without_the_semicolon() -> None:
    sql = "CREATE TABLE a (id int);\n\n  insert into a values (1) ;\nselect 1"
    assert texts(sql) == ["CREATE TABLE a (id int)", "insert into a values (1)", "select 1"]


def test_semicolons_inside_a_dollar_quoted_function_body_do_not_split_it() -> None:
    sql = """
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1;
    RETURN 2;
END;
$$;
SELECT f();
"""
    statements = split_statements(sql)
    assert [s.kind for s in statements] == ["CREATE FUNCTION", "SELECT"]
    assert statements[0].text.startswith("CREATE FUNCTION f()")
    assert statements[0].text.endswith("END;\n$$")


def test_nested_dollar_quotes_with_different_tags_stay_whole() -> None:
    sql = """
CREATE PROCEDURE p() LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE $$ CREATE TABLE t (a text DEFAULT 'x;y'); $$;
END;
$fn$;
CALL p();
"""
    statements = split_statements(sql)
    assert [s.kind for s in statements] == ["CREATE PROCEDURE", "CALL"]
    assert "$$ CREATE TABLE t (a text DEFAULT 'x;y'); $$;" in statements[0].text


def test_a_do_block_is_one_statement() -> None:
    sql = "DO $$ BEGIN RAISE NOTICE 'a;b'; PERFORM 1; END $$;\nSELECT 1;"
    statements = split_statements(sql)
    assert [s.kind for s in statements] == ["DO", "SELECT"]
    assert statements[0].text == "DO $$ BEGIN RAISE NOTICE 'a;b'; PERFORM 1; END $$"


def test_a_trigger_and_its_function_are_two_whole_statements() -> None:
    sql = """
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN NEW.updated_at := now(); RETURN NEW; END;
$body$;
CREATE TRIGGER touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();
"""
    assert [s.kind for s in split_statements(sql)] == ["CREATE FUNCTION", "CREATE TRIGGER"]


def test_semicolons_in_comments_and_string_literals_do_not_split() -> None:
    sql = """
-- a comment; with a semicolon
SELECT 'a;b' /* block; comment */, E'c\\';d' ;
/* leading; comment */ SELECT "odd;name" FROM t;
"""
    assert texts(sql) == ["SELECT 'a;b' /* block; comment */, E'c\\';d'", 'SELECT "odd;name" FROM t']


def test_leading_and_trailing_comments_are_not_part_of_a_statement() -> None:
    sql = "-- header\nSELECT 1; -- trailing\n/* between */\nSELECT 2 -- end of file, no semicolon\n"
    assert texts(sql) == ["SELECT 1", "SELECT 2"]


def test_line_numbers_point_at_the_statement_not_its_leading_comment() -> None:
    sql = "-- one\n-- two\nSELECT 1;\n\nSELECT\n  2;\n"
    assert [s.line for s in split_statements(sql)] == [3, 5]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("CREATE TABLE t (a int)", "CREATE TABLE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE AS"),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", "CREATE MATERIALIZED VIEW"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("CREATE TYPE mood AS ENUM ('sad')", "CREATE TYPE"),
        ("CREATE SEQUENCE s", "CREATE SEQUENCE"),
        ("CREATE EXTENSION pgcrypto", "CREATE EXTENSION"),
        ("CREATE FUNCTION f() RETURNS int RETURN 1", "CREATE FUNCTION"),
        ("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
        ("ALTER INDEX i SET TABLESPACE fast", "ALTER INDEX"),
        ("ALTER MATERIALIZED VIEW m SET TABLESPACE fast", "ALTER MATERIALIZED VIEW"),
        ("ALTER TABLE t RENAME COLUMN a TO b", "ALTER COLUMN"),  # a rename is named by what it renames
        ("ALTER VIEW v RENAME TO w", "ALTER VIEW"),
        ("ALTER TABLE t RENAME CONSTRAINT c TO d", "ALTER CONSTRAINT"),
        ("ALTER FOREIGN DATA WRAPPER w RENAME TO x", "ALTER FOREIGN DATA WRAPPER"),
        ("ALTER TYPE mood ADD VALUE 'meh'", "ALTER TYPE"),
        ("DROP TABLE t", "DROP TABLE"),
        ("DROP MATERIALIZED VIEW m", "DROP MATERIALIZED VIEW"),
        ("DROP FOREIGN TABLE f", "DROP FOREIGN TABLE"),
        ("DROP FOREIGN DATA WRAPPER w", "DROP FOREIGN DATA WRAPPER"),
        ("VACUUM t", "VACUUM"),
        ("ANALYZE t", "ANALYZE"),
        ("GRANT SELECT ON t TO app", "GRANT"),
        ("REVOKE SELECT ON t FROM app", "REVOKE"),
        ("GRANT admin TO app", "GRANT"),
        ("COMMENT ON TABLE t IS 'x'", "COMMENT"),
        ("SET search_path = shop", "SET"),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE"),
        ("LOCK TABLE t", "LOCK"),
    ],
)
def test_each_statement_is_named_by_its_command(sql: str, kind: str) -> None:
    (statement,) = split_statements(sql)
    assert statement.kind == kind


def test_a_script_of_only_comments_has_no_statements() -> None:
    assert split_statements("-- nothing to do here\n/* really */\n") == ()


def test_non_ascii_text_keeps_offsets_right() -> None:
    sql = "INSERT INTO t VALUES ('héllo; wörld');\nSELECT 'ü';"
    assert texts(sql) == ["INSERT INTO t VALUES ('héllo; wörld')", "SELECT 'ü'"]


def test_lines_and_texts_after_non_ascii_text_are_counted_in_characters() -> None:
    sql = "/* héllo ü; */ SELECT 'ä';\n-- ö\nSELECT\n  'ü' ; -- trailing é\nSELECT 3"
    statements = split_statements(sql)
    assert [(s.line, s.text) for s in statements] == [
        (1, "SELECT 'ä'"),
        (3, "SELECT\n  'ü'"),
        (5, "SELECT 3"),
    ]


# Transactions


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX INDEX CONCURRENTLY i",
        "REINDEX (CONCURRENTLY) TABLE t",
        "REINDEX DATABASE shop",
        "REINDEX SCHEMA shop",
        "VACUUM",
        "VACUUM (ANALYZE) t",
        "CLUSTER",
        "CREATE DATABASE shop",
        "DROP DATABASE shop",
        "CREATE TABLESPACE fast LOCATION '/ssd'",
        "DROP TABLESPACE fast",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "ALTER DATABASE shop SET TABLESPACE fast",
        "DISCARD ALL",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
        "ALTER SUBSCRIPTION s REFRESH PUBLICATION",
        "ALTER SUBSCRIPTION s SET PUBLICATION p",
        "DROP SUBSCRIPTION s",
        "REINDEX (CONCURRENTLY 1) INDEX i",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot)",
    ],
)
def test_statements_postgresql_refuses_in_a_transaction_block_are_not_transactional(sql: str) -> None:
    (statement,) = split_statements(sql)
    assert statement.transactional is False


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX i ON t (a)",
        "DROP INDEX i",
        "REINDEX INDEX i",
        "ANALYZE t",
        "CLUSTER t USING i",
        "ALTER TYPE mood ADD VALUE 'meh'",  # allowed in a transaction since PostgreSQL 12
        "REFRESH MATERIALIZED VIEW CONCURRENTLY m",
        "ALTER DATABASE shop SET work_mem = '64MB'",
        "DISCARD PLANS",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = false)",
        "ALTER SUBSCRIPTION s DISABLE",
        "REINDEX (CONCURRENTLY false) INDEX i",
        "REINDEX (CONCURRENTLY 0) INDEX i",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = 0)",
    ],
)
def test_lookalikes_of_non_transactional_statements_stay_transactional(sql: str) -> None:
    (statement,) = split_statements(sql)
    assert statement.transactional is True


def test_create_index_concurrently_names_the_index_it_may_leave_invalid() -> None:
    (statement,) = split_statements(
        "CREATE INDEX CONCURRENTLY orders_created_idx ON shop.orders (created_at)"
    )
    assert statement.kind == "CREATE INDEX"
    assert statement.concurrent_index == "shop.orders_created_idx"
    assert statement.concurrent_index_table == "shop.orders"


def test_a_concurrent_index_is_named_quoted_as_sql_reads_it_back() -> None:
    (statement,) = split_statements('CREATE INDEX CONCURRENTLY "Idx ""ä""" ON "Order Böok"."select" (id)')
    assert statement.concurrent_index == '"Order Böok"."Idx ""ä"""'
    assert statement.concurrent_index_table == '"Order Böok"."select"'


def test_an_unnamed_concurrent_index_gives_only_its_table() -> None:
    (statement,) = split_statements("CREATE INDEX CONCURRENTLY ON orders (created_at)")
    assert statement.concurrent_index is None
    assert statement.concurrent_index_table == "orders"


def test_an_ordinary_index_has_no_concurrent_index() -> None:
    (statement,) = split_statements("CREATE INDEX i ON orders (created_at)")
    assert statement.concurrent_index is None
    assert statement.concurrent_index_table is None


# Destructive statements


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE orders", "DROP TABLE orders"),
        ("DROP TABLE IF EXISTS shop.orders, lines CASCADE", "DROP TABLE shop.orders, lines"),
        ("DROP SCHEMA shop CASCADE", "DROP SCHEMA shop"),
        ("ALTER TABLE customers DROP COLUMN email", "DROP COLUMN customers.email"),
        ("ALTER TABLE shop.customers ALTER COLUMN id TYPE bigint", "column type change shop.customers.id"),
        ("ALTER TABLE customers ALTER id SET DATA TYPE text", "column type change customers.id"),
        ("TRUNCATE events", "TRUNCATE events"),
        ("TRUNCATE TABLE a, shop.b RESTART IDENTITY", "TRUNCATE a, shop.b"),
        ("DELETE FROM orders", "DELETE without WHERE on orders"),
        ("UPDATE orders SET status = 'x'", "UPDATE without WHERE on orders"),
        (
            "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone",
            "DELETE without WHERE on orders",
        ),
        ("EXPLAIN ANALYZE UPDATE orders SET total = 0", "UPDATE without WHERE on orders"),
        ("EXPLAIN (ANALYZE 1, VERBOSE) DELETE FROM orders", "DELETE without WHERE on orders"),
        (
            "SELECT 1 UNION ALL (WITH gone AS (DELETE FROM shop.orders RETURNING 1) SELECT 1)",
            "DELETE without WHERE on shop.orders",
        ),
        (
            "WITH a AS (UPDATE orders SET x = 1 RETURNING 1) DELETE FROM lines",
            "DELETE without WHERE on lines; UPDATE without WHERE on orders",
        ),
        ("DROP DOMAIN shop.money CASCADE", "DROP DOMAIN shop.money CASCADE (drops the columns that use it)"),
        ("DROP EXTENSION hstore CASCADE", "DROP EXTENSION hstore CASCADE (drops the columns that use it)"),
        ("DROP TYPE mood CASCADE", "DROP TYPE mood CASCADE (drops the columns that use it)"),
        ("DROP DATABASE shop", "DROP DATABASE shop"),
        ("DROP OWNED BY app", "DROP OWNED (drops every table the roles own)"),
    ],
)
def test_statements_that_can_lose_data_say_why(sql: str, reason: str) -> None:
    assert only(sql) == reason


def test_every_data_losing_part_of_one_alter_table_is_named() -> None:
    reason = only("ALTER TABLE customers DROP COLUMN email, ALTER COLUMN id TYPE bigint, ADD COLUMN x int")
    assert reason == "DROP COLUMN customers.email; column type change customers.id"


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders WHERE id = 1",
        "UPDATE orders SET status = 'x' WHERE id = 1",
        "DROP INDEX orders_created_idx",
        "DROP VIEW order_totals",
        "DROP MATERIALIZED VIEW order_totals",
        "DROP FUNCTION f(int)",
        "DROP TYPE mood",
        "DROP SEQUENCE s",
        "ALTER TABLE customers ADD COLUMN tier text",
        "ALTER TABLE customers ALTER COLUMN tier SET DEFAULT 'bronze'",
        "EXPLAIN DELETE FROM orders",
        "EXPLAIN (ANALYZE false) DELETE FROM orders",
        "EXPLAIN (ANALYZE 0) UPDATE orders SET total = 0",
        "DROP EXTENSION hstore",
        "ALTER TABLE customers ALTER COLUMN tier DROP DEFAULT, DROP CONSTRAINT c",
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM log",
        "INSERT INTO t SELECT * FROM s",
        "SELECT 1",
    ],
)
def test_lookalikes_that_lose_no_data_are_not_destructive(sql: str) -> None:
    assert only(sql) is None


def test_statements_inside_function_bodies_and_do_blocks_are_not_inspected() -> None:
    assert only("DO $$ BEGIN DELETE FROM orders; END $$") is None


# Syntax errors and refused statements


def test_a_syntax_error_names_the_file_line_and_postgresql_message() -> None:
    sql = "CREATE TABLE a (id int);\n\n-- the typo is below\nCREAT TABLE b (id int);\n"
    with pytest.raises(ScriptSyntaxError) as raised:
        split_statements(sql, "0002_b.sql")
    assert raised.value.file == "0002_b.sql"
    assert raised.value.line == 4
    assert raised.value.message == 'syntax error at or near "CREAT"'
    assert str(raised.value) == '0002_b.sql:4: syntax error at or near "CREAT"'


def test_an_unterminated_dollar_quote_is_a_syntax_error_where_it_starts() -> None:
    with pytest.raises(ScriptSyntaxError) as raised:
        split_statements("SELECT 1;\nDO $$ BEGIN\nPERFORM 1;\n", "x.sql")
    assert raised.value.line == 2
    assert "unterminated dollar-quoted string" in raised.value.message


def test_psql_meta_commands_are_a_syntax_error_that_says_so() -> None:
    with pytest.raises(ScriptSyntaxError, match="psql meta-commands") as raised:
        split_statements("SELECT 1;\n\\connect other\n", "x.sql")
    assert raised.value.line == 2


@pytest.mark.parametrize("sql", ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "START TRANSACTION"])
def test_transaction_control_is_refused(sql: str) -> None:
    with pytest.raises(UnsupportedStatement, match="remove transaction control"):
        split_statements(f"SELECT 1;\n{sql};\n", "x.sql")


def test_copy_from_stdin_is_refused_but_copy_from_a_server_file_is_not() -> None:
    with pytest.raises(UnsupportedStatement, match="COPY FROM STDIN"):
        split_statements("COPY t FROM STDIN")
    assert split_statements("COPY t FROM '/data/t.csv' WITH (FORMAT csv)")[0].kind == "COPY"


@pytest.mark.parametrize("sql", ["COPY t TO STDOUT", "COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)"])
def test_copy_to_stdout_is_refused(sql: str) -> None:
    with pytest.raises(UnsupportedStatement, match="COPY FROM STDIN / TO STDOUT needs psql") as raised:
        split_statements(f"SELECT 'é';\n{sql};\n", "x.sql")
    assert raised.value.line == 2


def test_copy_from_a_program_on_the_server_is_not_refused() -> None:
    assert split_statements("COPY t FROM PROGRAM 'cat /data/t.csv'")[0].kind == "COPY"


def test_a_syntax_error_after_non_ascii_text_names_its_line() -> None:
    with pytest.raises(ScriptSyntaxError) as raised:
        split_statements("SELECT 'héllo';\n-- ü\nSELEC 'ö';\n", "x.sql")
    assert raised.value.line == 3
    assert raised.value.message == 'syntax error at or near "SELEC"'


# Directives


def test_no_directives_means_defaults() -> None:
    assert parse_directives("SELECT 1;") == Directives(no_transaction=False, allow_destructive=False)


def test_directives_are_read_from_comments_anywhere_in_the_file() -> None:
    sql = "-- pgwarden:no-transaction\nSELECT 1;\n--pgwarden:allow-destructive drops the legacy table\nDROP TABLE x;"
    assert parse_directives(sql) == Directives(no_transaction=True, allow_destructive=True)


def test_a_block_comment_directive_counts_too() -> None:
    assert parse_directives("/* pgwarden:allow-destructive */ DROP TABLE x;").allow_destructive


def test_directive_words_in_strings_or_prose_are_not_directives() -> None:
    sql = "SELECT '-- pgwarden:no-transaction';\n-- see pgwarden:no-transaction in the README\n"
    assert parse_directives(sql) == Directives()


def test_an_unknown_directive_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownDirective) as raised:
        parse_directives("SELECT 1;\n-- pgwarden:no-transactions\n", "0003_x.sql")
    assert raised.value.line == 2
    assert "pgwarden:no-transactions" in str(raised.value)
    assert "known directives: pgwarden:no-transaction, pgwarden:allow-destructive" in str(raised.value)
    assert "did you mean pgwarden:no-transaction?" in str(raised.value)


def test_a_parsed_script_runs_in_a_transaction_unless_a_statement_or_directive_says_otherwise() -> None:
    assert parse_script("CREATE INDEX i ON t (a);").runs_in_transaction
    assert not parse_script("CREATE INDEX CONCURRENTLY i ON t (a);").runs_in_transaction
    assert not parse_script("-- pgwarden:no-transaction\nCREATE INDEX i ON t (a);").runs_in_transaction
