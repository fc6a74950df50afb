"""Row counts: parallel equals sequential, one snapshot for all, odd names, no double counting, estimates."""

from __future__ import annotations

import psycopg
import pytest

from pgwarden.engine.postgres.counts import (
    count_rows,
    count_rows_in_transaction,
    estimate_from_statistics,
    estimate_rows,
)
from pgwarden.engine.postgres.inspect import list_user_tables
from pgwarden.errors import PgwardenError

WEIRD = '"Mixed Case"."weird ""name"""'
SEED = '''
CREATE SCHEMA "Mixed Case";
CREATE TABLE "Mixed Case"."weird ""name""" (id int);
CREATE TABLE "CamelTable" (id int);
CREATE TABLE measurements (at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE measurements_a PARTITION OF measurements FOR VALUES FROM ('2020-01-01') TO ('2022-01-01');
CREATE TABLE measurements_b PARTITION OF measurements FOR VALUES FROM ('2022-01-01') TO ('2024-01-01')
    PARTITION BY RANGE (at);
CREATE TABLE measurements_b1 PARTITION OF measurements_b FOR VALUES FROM ('2022-01-01') TO ('2024-01-01');
CREATE TABLE parent_legacy (id int);
CREATE TABLE child_legacy () INHERITS (parent_legacy);
INSERT INTO "Mixed Case"."weird ""name""" SELECT g FROM generate_series(1, 11) g;
INSERT INTO "CamelTable" SELECT g FROM generate_series(1, 13) g;
INSERT INTO measurements SELECT date '2020-01-01' + g % 1400, g FROM generate_series(1, 5000) g;
INSERT INTO parent_legacy SELECT g FROM generate_series(1, 20) g;
INSERT INTO child_legacy SELECT g FROM generate_series(1, 30) g;
'''
for i in range(20):
    SEED += f"CREATE TABLE t{i} (id int); INSERT INTO t{i} SELECT generate_series(1, {i * 100});\n"

EXPECTED = {
    WEIRD: 11,
    '"CamelTable"': 13,
    "public.measurements": 5000,
    "public.parent_legacy": 20,
    "public.child_legacy": 30,
    **{f"public.t{i}": i * 100 for i in range(20)},
}


@pytest.fixture
def seeded_url(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SEED)
    return db_url


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return list_user_tables(conn)


def test_user_tables_leave_partitions_to_their_parent(seeded_url: str) -> None:
    tables = _tables(seeded_url)
    assert sorted(tables) == sorted(name if "." in name else f"public.{name}" for name in EXPECTED)
    assert not any("measurements_" in name for name in tables)


def test_parallel_counts_equal_sequential_and_in_transaction_counts(seeded_url: str) -> None:
    tables = _tables(seeded_url)
    parallel = count_rows(seeded_url, tables, concurrency=4)
    sequential = count_rows(seeded_url, tables, concurrency=1)
    with psycopg.connect(seeded_url) as conn:
        in_transaction = count_rows_in_transaction(conn, tables)
    assert parallel == sequential == in_transaction
    assert parallel['"Mixed Case"."weird ""name"""'] == 11
    assert parallel['public."CamelTable"'] == 13


def test_partitions_and_inheritance_children_are_not_counted_twice(seeded_url: str) -> None:
    counts = count_rows(seeded_url, _tables(seeded_url))
    assert counts["public.measurements"] == 5000
    assert counts["public.parent_legacy"] == 20
    assert counts["public.child_legacy"] == 30
    assert sum(counts.values()) == sum(EXPECTED.values())


def test_counts_at_an_exported_snapshot_ignore_rows_committed_afterwards(seeded_url: str) -> None:
    tables = _tables(seeded_url)
    with psycopg.connect(seeded_url) as holder, psycopg.connect(seeded_url, autocommit=True) as writer:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        snapshot_id = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        writer.execute("INSERT INTO t5 SELECT generate_series(1, 1000)")
        writer.execute('DELETE FROM "Mixed Case"."weird ""name"""')
        at_snapshot = count_rows(seeded_url, tables, concurrency=3, snapshot_id=snapshot_id)
        now = count_rows(seeded_url, tables, concurrency=3)
    assert at_snapshot["public.t5"] == 500 and now["public.t5"] == 1500
    assert at_snapshot[WEIRD] == 11 and now[WEIRD] == 0


def test_counting_at_a_snapshot_that_is_gone_fails_clearly(seeded_url: str) -> None:
    with pytest.raises(PgwardenError, match="transaction that exported it must still be open"):
        count_rows(seeded_url, ["public.t1"], snapshot_id="00000003-0000001B-1")


def test_counts_in_a_transaction_see_its_uncommitted_rows(seeded_url: str) -> None:
    with psycopg.connect(seeded_url) as conn:
        conn.execute("INSERT INTO t1 SELECT generate_series(1, 5)")
        conn.execute("CREATE TABLE brand_new (id int)")
        counts = count_rows_in_transaction(conn, ["public.t1", "public.brand_new", WEIRD])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
    assert counts == {"public.t1": 105, "public.brand_new": 0, WEIRD: 11}


def test_counting_a_missing_table_names_it(seeded_url: str) -> None:
    with pytest.raises(PgwardenError, match=r"public\.nope"):
        count_rows(seeded_url, ["public.t1", "public.nope"])


def test_estimates_equal_exact_counts_after_analyze(seeded_url: str) -> None:
    tables = _tables(seeded_url)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        estimates = estimate_rows(conn, tables)
    assert estimates == count_rows(seeded_url, tables)


def test_estimates_of_never_analyzed_tables_are_close_and_empty_tables_are_zero(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fresh (id int, label text); CREATE TABLE empty (id int)")
        conn.execute("INSERT INTO fresh SELECT g, 'label ' || g FROM generate_series(1, 20000) g")
        estimates = estimate_rows(conn, ["public.fresh", "public.empty"])
    assert estimates["public.empty"] == 0
    assert 10000 <= estimates["public.fresh"] <= 40000


def test_statistics_are_scaled_to_the_current_size() -> None:
    assert estimate_from_statistics(1000.0, 10, 20) == 2000
    assert estimate_from_statistics(1000.0, 10, 0) == 0
    assert estimate_from_statistics(-1.0, 0, 5) is None  # never analyzed: the planner guesses
    assert estimate_from_statistics(0.0, 0, 5) is None  # analyzed while empty, filled since
