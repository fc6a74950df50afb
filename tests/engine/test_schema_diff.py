"""Schema differences and fingerprints: pure on hand-made snapshots, and on real databases changed by hand."""

from __future__ import annotations

import json

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.api.reports import Difference
from pgwarden.api.schema import Column, Index, SchemaSnapshot, Table, View
from pgwarden.engine.postgres.inspect import snapshot_database
from pgwarden.engine.postgres.schema_diff import (
    diff_snapshots,
    fingerprint,
    qualified_name,
    quote_ident,
    snapshot_from_json,
    snapshot_to_json,
)

DDL = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    total integer DEFAULT 0 CHECK (total >= 0),
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
CREATE FUNCTION order_total(o integer) RETURNS integer LANGUAGE sql STABLE
    AS $$ SELECT total FROM public.orders WHERE id = o $$;
CREATE FUNCTION set_zero() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.total := 0; RETURN NEW; END $$;
CREATE TRIGGER orders_zero BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION set_zero();
CREATE SEQUENCE invoice_no;
"""


def _table(name: str, *columns: Column) -> Table:
    return Table(schema_="public", name=name, columns=list(columns))


def test_a_changed_column_type_reads_as_old_to_new() -> None:
    a = SchemaSnapshot(tables=[_table("orders", Column(name="total", type="integer", nullable=False))])
    b = SchemaSnapshot(tables=[_table("orders", Column(name="total", type="bigint", default="0"))])
    assert diff_snapshots(a, b) == [
        Difference(kind="column", object="public.orders.total", detail="type integer -> bigint"),
        Difference(kind="column", object="public.orders.total", detail="not null -> nullable"),
        Difference(kind="column", object="public.orders.total", detail="default none -> 0"),
    ]


def test_a_table_on_one_side_is_one_difference_not_one_per_column_and_index() -> None:
    a = SchemaSnapshot(
        tables=[_table("gone", Column(name="id", type="integer"))],
        indexes=[Index(schema_="public", name="gone_pkey", table="gone", definition="CREATE ...")],
    )
    assert diff_snapshots(a, SchemaSnapshot()) == [
        Difference(kind="table", object="public.gone", detail="only in A")
    ]
    assert diff_snapshots(SchemaSnapshot(), a)[0].detail == "only in B"


def test_reordered_columns_and_a_view_made_materialized_are_named() -> None:
    cols = [Column(name="a", type="integer"), Column(name="b", type="integer")]
    a = SchemaSnapshot(tables=[_table("t", *cols)], views=[View(schema_="public", name="v", definition="x")])
    b = SchemaSnapshot(
        tables=[_table("t", *reversed(cols))],
        views=[View(schema_="public", name="v", definition="x", materialized=True)],
    )
    assert [d.detail for d in diff_snapshots(a, b)] == [
        "column order a, b -> b, a",
        "kind view -> materialized view",
    ]


def test_fingerprint_ignores_list_order_but_not_column_order() -> None:
    t1, t2 = _table("a", Column(name="x", type="int")), _table("b", Column(name="y", type="int"))
    assert fingerprint(SchemaSnapshot(tables=[t1, t2])) == fingerprint(SchemaSnapshot(tables=[t2, t1]))
    swapped = _table("a", Column(name="y", type="int"), Column(name="x", type="int"))
    unswapped = _table("a", Column(name="x", type="int"), Column(name="y", type="int"))
    assert fingerprint(SchemaSnapshot(tables=[swapped])) != fingerprint(SchemaSnapshot(tables=[unswapped]))


def test_names_are_quoted_as_postgresql_quotes_them() -> None:
    assert quote_ident("orders") == "orders"
    assert quote_ident("Orders") == '"Orders"'
    assert quote_ident('weird "name"') == '"weird ""name"""'
    assert quote_ident("select") == '"select"'
    assert quote_ident("name") == "name"  # unreserved keyword
    assert qualified_name("My Schema", "t", "col") == '"My Schema".t.col'


@pytest.fixture
def twins(pg: LocalPostgres) -> tuple[str, str]:
    """Two databases made by the same DDL."""
    urls = (pg.create_database(), pg.create_database())
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DDL)
    return urls


def _change(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def test_databases_made_by_the_same_ddl_are_identical(twins: tuple[str, str]) -> None:
    a, b = (snapshot_database(url) for url in twins)
    assert diff_snapshots(a, b) == []
    assert fingerprint(a) == fingerprint(b)


def test_a_snapshot_survives_storage_as_json(twins: tuple[str, str]) -> None:
    snapshot = snapshot_database(twins[0])
    stored = snapshot_to_json(snapshot)
    assert "tables" in stored and "definitionSha256" in str(stored)
    assert snapshot_from_json(stored) == snapshot
    assert fingerprint(snapshot_from_json(json.dumps(stored))) == fingerprint(snapshot)


def test_hand_made_changes_are_each_named(twins: tuple[str, str]) -> None:
    a_url, b_url = twins
    _change(
        b_url,
        """
        DROP VIEW big_orders;
        ALTER TABLE orders ALTER COLUMN total TYPE bigint;
        ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
        CREATE INDEX orders_total_idx ON orders (total);
        CREATE OR REPLACE FUNCTION order_total(o integer) RETURNS integer LANGUAGE sql STABLE
            AS $$ SELECT total::integer * 2 FROM public.orders WHERE id = o $$;
        ALTER TABLE orders DISABLE TRIGGER orders_zero;
        ALTER SEQUENCE invoice_no INCREMENT 10;
        ALTER TABLE customers ADD COLUMN name text;
        """,
    )
    differences = diff_snapshots(snapshot_database(a_url), snapshot_database(b_url))
    found = {(d.kind, d.object, d.detail) for d in differences}
    assert found == {
        ("column", "public.customers.name", "only in B"),
        ("column", "public.orders.total", "type integer -> bigint"),
        ("column", "public.orders.note", "nullable -> not null"),
        ("index", "public.orders_total_idx", "only in B"),
        ("view", "public.big_orders", "only in A"),
        ("function", "public.order_total(o integer)", "definition differs"),
        ("trigger", "public.orders.orders_zero", "enabled yes -> no"),
        ("sequence", "public.invoice_no", "increment 1 -> 10"),
    }


def test_changed_constraint_and_index_definitions_show_both_sides(twins: tuple[str, str]) -> None:
    a_url, b_url = twins
    _change(
        b_url,
        """
        ALTER TABLE orders DROP CONSTRAINT orders_total_check, ADD CONSTRAINT orders_total_check CHECK (total > 0);
        DROP INDEX orders_customer_idx; CREATE INDEX orders_customer_idx ON orders (customer_id, total);
        """,
    )
    details = {d.object: d.detail for d in diff_snapshots(snapshot_database(a_url), snapshot_database(b_url))}
    assert details == {
        "public.orders.orders_total_check": "definition CHECK ((total >= 0)) -> CHECK ((total > 0))",
        "public.orders_customer_idx": (
            "definition CREATE INDEX orders_customer_idx ON public.orders USING btree (customer_id) -> "
            "CREATE INDEX orders_customer_idx ON public.orders USING btree (customer_id, total)"
        ),
    }
