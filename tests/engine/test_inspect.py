"""Schema snapshots and `inspect_database`: every user object, nothing of extensions or pgwarden, on 15 and 18."""

from __future__ import annotations

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.api.schema import RowCounts, TableKind
from pgwarden.engine.postgres.inspect import database_size, inspect_database, list_user_tables, take_snapshot

PLAIN_TABLES = 24

# A small shop: customers, orders, a partitioned event log, odd names, and one of everything else.
SHOP_DDL = '''
CREATE EXTENSION hstore;
CREATE SCHEMA shop;
CREATE SCHEMA "Mixed Case";
CREATE SCHEMA pgwarden;
CREATE TABLE pgwarden.schema_history (version text);
CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN shop.positive AS integer CHECK (VALUE > 0);
CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    attrs hstore
);
CREATE TABLE shop.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    total numeric(10, 2) DEFAULT 0 CHECK (total >= 0),
    quantity shop.positive,
    status shop.status NOT NULL DEFAULT 'new',
    total_with_tax numeric GENERATED ALWAYS AS (total * 1.2) STORED
);
CREATE INDEX orders_customer_idx ON shop.orders (customer_id);
CREATE TABLE shop.events (day date NOT NULL, payload text) PARTITION BY RANGE (day);
CREATE TABLE shop.events_2024 PARTITION OF shop.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE "Mixed Case"."Weird ""name""" ("Odd Column" int, "select" text);
CREATE SEQUENCE shop.invoice_no INCREMENT 5 START 1000;
CREATE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 100;
CREATE MATERIALIZED VIEW shop.order_totals AS SELECT customer_id, sum(total) AS total FROM shop.orders GROUP BY 1;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.total := coalesce(NEW.total, 0); RETURN NEW; END $$;
CREATE FUNCTION shop.add(a integer, b integer) RETURNS integer LANGUAGE sql IMMUTABLE RETURN a + b;
CREATE PROCEDURE shop.archive(before date) LANGUAGE sql AS $$ DELETE FROM shop.events WHERE day < before $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch();
'''


def shop_rows_sql() -> str:
    """Rows for the shop, plus `PLAIN_TABLES` plain tables of 0, 40, 80 ... rows."""
    plain = "\n".join(
        f"CREATE TABLE public.t{i:02} (id int PRIMARY KEY, label text);"
        f"INSERT INTO public.t{i:02} SELECT g, 'row ' || g FROM generate_series(1, {i * 40}) g;"
        for i in range(PLAIN_TABLES)
    )
    return (
        plain
        + '''
INSERT INTO shop.customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, 500) g;
INSERT INTO shop.orders (customer_id, total, quantity) SELECT 1 + g % 500, g % 300, 1 + g % 7
    FROM generate_series(1, 3000) g;
INSERT INTO shop.events SELECT date '2024-06-01' + (g % 400), 'e' || g FROM generate_series(1, 2000) g;
INSERT INTO "Mixed Case"."Weird ""name""" SELECT g, 'x' FROM generate_series(1, 7) g;
INSERT INTO pgwarden.schema_history SELECT 'v' || g FROM generate_series(1, 99) g;
REFRESH MATERIALIZED VIEW shop.order_totals;
'''
    )


SHOP_ROWS = sum(i * 40 for i in range(PLAIN_TABLES)) + 500 + 3000 + 2000 + 7
SHOP_TABLES = PLAIN_TABLES + 4  # customers, orders, events (partitions count in their parent), Weird "name"


def seed_shop(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SHOP_DDL)
        conn.execute(shop_rows_sql())


@pytest.fixture
def shop_url(db_url: str) -> str:
    seed_shop(db_url)
    return db_url


def test_snapshot_holds_every_kind_of_user_object(shop_url: str) -> None:
    with psycopg.connect(shop_url) as conn:
        snap = take_snapshot(conn)
    tables = {(t.schema_, t.name): t for t in snap.tables}
    assert tables["shop", "events"].kind == TableKind.PARTITIONED
    assert tables["shop", "events"].partition_key == "RANGE (day)"
    assert tables["shop", "events_2024"].partition_of == "shop.events"
    assert "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')" in (
        tables["shop", "events_2024"].partition_bound or ""
    )
    orders = tables["shop", "orders"]
    assert [c.name for c in orders.columns] == [
        "id",
        "customer_id",
        "total",
        "quantity",
        "status",
        "total_with_tax",
    ]
    columns = {c.name: c for c in orders.columns}
    assert columns["total"].type == "numeric(10,2)"
    assert columns["customer_id"].nullable is False
    assert columns["id"].default == "nextval('shop.orders_id_seq'::regclass)"
    assert columns["status"].default == "'new'::shop.status"
    assert columns["total_with_tax"].generated == "(total * 1.2)"
    assert tables["shop", "customers"].columns[0].identity == "always"
    assert ("Mixed Case", 'Weird "name"') in tables

    indexes = {i.name: i for i in snap.indexes}
    assert indexes["orders_customer_idx"].definition == (
        "CREATE INDEX orders_customer_idx ON shop.orders USING btree (customer_id)"
    )
    assert indexes["orders_pkey"].primary and indexes["orders_pkey"].unique and indexes["orders_pkey"].valid
    constraint_types = {c.name: c.type for c in snap.constraints}
    assert constraint_types["orders_customer_id_fkey"] == "foreign key"
    assert constraint_types["orders_total_check"] == "check"
    assert constraint_types["customers_email_key"] == "unique"
    assert not any(name.endswith("_not_null") for name in constraint_types)  # PG 18's NOT NULL rows

    assert {(v.name, v.materialized) for v in snap.views} == {("big_orders", False), ("order_totals", True)}
    functions = {f.name: f for f in snap.functions}
    assert set(functions) == {"touch", "add", "archive"}
    assert functions["add"].arguments == "a integer, b integer"
    assert functions["add"].returns == "integer"
    assert functions["archive"].kind == "procedure"
    assert functions["touch"].language == "plpgsql"
    assert len(functions["touch"].definition_sha256) == 64
    sequences = {s.name: s for s in snap.sequences}
    assert sequences["invoice_no"].increment == 5 and sequences["invoice_no"].start == 1000
    assert "orders_id_seq" in sequences
    assert [(t.table, t.name) for t in snap.triggers] == [("orders", "orders_touch")]
    assert {(t.name, t.kind) for t in snap.types} == {("status", "enum"), ("positive", "domain")}
    assert snap.schemas == ["Mixed Case", "public", "shop"]
    assert [e.name for e in snap.extensions] == ["hstore"]


def test_snapshot_leaves_out_extension_objects_and_pgwarden_schema(shop_url: str) -> None:
    with psycopg.connect(shop_url) as conn:
        snap = take_snapshot(conn)
        own_included = take_snapshot(conn, own_schema="elsewhere")
    assert not any(f.name.startswith("hstore") for f in snap.functions)
    assert not any(t.name == "hstore" for t in snap.types)
    assert all(t.schema_ != "pgwarden" for t in snap.tables)
    assert ("pgwarden", "schema_history") in {(t.schema_, t.name) for t in own_included.tables}


def test_an_invalid_index_is_reported_invalid(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v)")
        snap = take_snapshot(conn)
    assert [(i.name, i.valid) for i in snap.indexes] == [("dup_v_key", False)]


def test_snapshot_inside_an_open_transaction_sees_its_ddl_and_leaves_it_as_it_was(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SET search_path = public")
        conn.commit()
        conn.execute("CREATE TABLE uncommitted (id int)")
        conn.execute("SET LOCAL statement_timeout = '42s'")
        snap = take_snapshot(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("42s",)
        assert conn.execute("SELECT count(*) FROM uncommitted").fetchone() == (0,)
        conn.rollback()
    assert [t.name for t in snap.tables] == ["uncommitted"]


def test_user_tables_are_parents_and_plain_tables_quoted_where_needed(shop_url: str) -> None:
    with psycopg.connect(shop_url) as conn:
        tables = list_user_tables(conn)
        assert database_size(conn) > 0
    assert '"Mixed Case"."Weird ""name"""' in tables
    assert "shop.events" in tables
    assert "shop.events_2024" not in tables
    assert "pgwarden.schema_history" not in tables
    assert len(tables) == SHOP_TABLES
    assert tables == sorted(tables)


def test_inspect_counts_every_row_once_on_oldest_and_newest(any_pg: LocalPostgres) -> None:
    url = any_pg.create_database()
    seed_shop(url)
    progress: list[tuple[int, int]] = []
    report = inspect_database(
        url, concurrency=3, on_counted=lambda done, total: progress.append((done, total))
    )
    assert report.tables == SHOP_TABLES
    assert report.rows == SHOP_ROWS
    assert report.row_counts == RowCounts.EXACT and report.estimated is False
    assert report.server_version.startswith(str(any_pg.install.major))
    assert report.size_bytes > 0
    per_table = {t.table: t for t in report.per_table}
    assert per_table["shop.events"].rows == 2000
    assert per_table["shop.events"].kind == TableKind.PARTITIONED
    assert (per_table["shop.events"].size_bytes or 0) > 0
    assert per_table['"Mixed Case"."Weird ""name"""'].rows == 7
    assert progress[-1] == (SHOP_TABLES, SHOP_TABLES)
    assert (report.views, report.materialized_views, report.functions, report.triggers) == (1, 1, 3, 1)
    assert report.partitions == 2 and report.invalid_indexes == 0
    assert len(report.schema_fingerprint) == 64
    assert any_pg.password not in str(report.to_json_dict())


def test_inspect_estimates_match_exact_counts_after_analyze(shop_url: str) -> None:
    with psycopg.connect(shop_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    report = inspect_database(shop_url, counts="estimate")
    assert report.estimated is True and report.row_counts == RowCounts.ESTIMATE
    assert report.rows == SHOP_ROWS
    assert {t.table: t.rows for t in report.per_table}["shop.events"] == 2000


def test_inspect_without_counts_reports_no_rows(shop_url: str) -> None:
    report = inspect_database(shop_url, counts="none")
    assert report.rows is None
    assert all(t.rows is None for t in report.per_table)
    assert "rows" not in report.to_json_dict()


def test_listing_tables_waits_for_no_table_lock(shop_url: str) -> None:
    with psycopg.connect(shop_url) as holder, psycopg.connect(shop_url, autocommit=True) as conn:
        holder.execute("LOCK TABLE shop.orders, shop.events IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '1s'")
        assert "shop.orders" in list_user_tables(conn)
        holder.rollback()


def test_a_snapshot_inside_the_transaction_that_holds_the_locks_does_not_wait(shop_url: str) -> None:
    with psycopg.connect(shop_url) as conn:
        conn.execute("SET lock_timeout = '1s'")
        conn.execute("LOCK TABLE shop.orders, shop.events IN ACCESS EXCLUSIVE MODE")
        conn.execute("ALTER TABLE shop.orders ADD COLUMN note text")
        snap = take_snapshot(conn)
        conn.rollback()
    assert "note" in {c.name for t in snap.tables if t.name == "orders" for c in t.columns}
