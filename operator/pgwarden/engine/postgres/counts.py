"""Row counts of tables: exact (in parallel, optionally at one exported snapshot) or estimated from statistics.

Tables are named as `list_user_tables` names them (`schema.name`, quoted where needed) and resolved by the
server (`to_regclass`), so odd names and mixed case need no parsing here. An ordinary table is counted
with `ONLY`, so rows of inheritance children are not counted twice; a partitioned table is counted
through its parent, which sees every partition (partitions themselves are not in the user's table list).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.engine.postgres.connect import connect
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.errors import PgwardenError, ServerError
from pgwarden.threads import HelperPool, start_helper

Connection = psycopg.Connection[Any]
OnCounted = Callable[[int, int], None]


class CountFailed(ServerError):
    """Counting failed on the server."""

    def __init__(self, message: str, exc: psycopg.Error) -> None:
        super().__init__(f"{message}: {describe_error(exc)}", exc.sqlstate)


# Enough to keep one statement's text small; thousands of tables still take only a few round trips.
_TABLES_PER_STATEMENT = 200


@dataclass(frozen=True)
class CountTarget:
    """A table to count: the caller's name for it, and what the server resolved it to."""

    name: str
    schema: str
    relname: str
    relkind: str
    oid: int

    def count_query(self) -> sql.Composed:
        only = sql.SQL("ONLY ") if self.relkind == "r" else sql.SQL("")
        return sql.SQL("SELECT count(*) FROM {}{}").format(only, sql.Identifier(self.schema, self.relname))


_RESOLVE = """
SELECT u.name, n.nspname, c.relname, c.relkind, c.oid
FROM unnest(%(names)s::text[]) WITH ORDINALITY AS u(name, ord)
LEFT JOIN pg_class c ON c.oid = to_regclass(u.name)
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY u.ord
"""


def resolve_tables(conn: Connection, tables: Sequence[str]) -> list[CountTarget]:
    """The server's idea of each named table; a name that resolves to nothing is an error."""
    try:
        rows = conn.execute(_RESOLVE, {"names": list(tables)}).fetchall()
    except psycopg.Error as exc:
        raise CountFailed("cannot look up tables to count", exc) from exc
    missing = [row[0] for row in rows if row[4] is None]
    if missing:
        raise PgwardenError(f"cannot count rows of {', '.join(missing)}: no such table")
    return [
        CountTarget(name, schema, relname, str(kind), int(oid)) for name, schema, relname, kind, oid in rows
    ]


def _counting_connection(url: str, snapshot_id: str | None) -> Connection:
    if snapshot_id is None:
        return connect(url, autocommit=True)
    conn = connect(url)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    except psycopg.Error as exc:
        conn.close()
        raise PgwardenError(
            f"cannot count at snapshot {snapshot_id}: {describe_error(exc)} "
            "(the transaction that exported it must still be open)"
        ) from exc
    return conn


# Counts taken beside a dump or a restore, which does the main work: two connections are enough.
BACKGROUND_COUNT_CONCURRENCY = 2


def count_rows(
    url: str,
    tables: Sequence[str],
    *,
    concurrency: int = 4,
    snapshot_id: str | None = None,
    on_counted: OnCounted | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Exact counts, `concurrency` tables at a time, each worker on a connection of its own.

    With `snapshot_id` (from `pg_export_snapshot()` in a transaction that stays open meanwhile), every
    worker counts at that snapshot, so rows committed afterwards are not seen and totals are consistent.
    Setting `stop` (the caller failed or was interrupted) cancels the counts under way and skips the rest,
    so no worker thread keeps the process alive counting for nobody.
    """
    if not tables:
        return {}
    workers = max(1, min(concurrency, len(tables)))
    connections: list[Connection] = []
    try:
        for _ in range(workers):
            connections.append(_counting_connection(url, snapshot_id))
        targets = resolve_tables(connections[0], tables)
        idle: queue.Queue[Connection] = queue.Queue()
        for conn in connections:
            idle.put(conn)

        stopped = stop or threading.Event()

        def count_one(target: CountTarget) -> tuple[str, int]:
            if stopped.is_set():
                raise PgwardenError("counting was stopped")
            conn = idle.get()
            try:
                row = conn.execute(target.count_query()).fetchone()
            except psycopg.Error as exc:
                raise CountFailed(f"counting rows of {target.name} failed", exc) from exc
            finally:
                idle.put(conn)
            return target.name, int(row[0]) if row else 0

        counts: dict[str, int] = {}
        _cancel_when_stopped(stopped, connections)
        pool = HelperPool(max_workers=workers, thread_name_prefix="pgwarden-count")
        try:
            for name, rows in pool.map(count_one, targets):
                counts[name] = rows
                if on_counted is not None:
                    on_counted(len(counts), len(targets))
        except BaseException:  # a failed count or Ctrl-C/SIGTERM: cancel what runs, drop what waits
            stopped.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return counts
    finally:
        for conn in connections:
            conn.close()


def _cancel_when_stopped(stop: threading.Event, connections: list[Connection]) -> None:
    """Cancel the queries of `connections` once `stop` is set (a daemon watcher; closed ones are skipped)."""

    def watch() -> None:
        while not stop.wait(0.2):
            if all(conn.closed for conn in connections):
                return
        for conn in connections:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=2)

    start_helper(threading.Thread(target=watch, name="pgwarden-count-cancel", daemon=True))


def count_rows_in_transaction(conn: Connection, tables: Sequence[str]) -> dict[str, int]:
    """Exact counts on the caller's connection, inside its transaction (so uncommitted changes count).

    One statement (a UNION ALL of counts) per few hundred tables; nothing is committed or rolled back.
    """
    targets = resolve_tables(conn, tables)
    counts: dict[str, int] = {}
    for start in range(0, len(targets), _TABLES_PER_STATEMENT):
        chunk = targets[start : start + _TABLES_PER_STATEMENT]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} AS i, c FROM ({}) AS q(c)").format(sql.Literal(i), target.count_query())
            for i, target in enumerate(chunk)
        )
        try:
            rows = conn.execute(query).fetchall()
        except psycopg.Error as exc:
            raise CountFailed("counting rows failed", exc) from exc
        for i, count in rows:
            counts[chunk[int(i)].name] = int(count)
    return counts


# ---- estimates -------------------------------------------------------------------------------------

# Per table, the relations that hold its rows: itself, or a partitioned table's leaf partitions.
_STATISTICS = """
SELECT r.ord, n.nspname, c.relname, c.reltuples, c.relpages,
       pg_relation_size(c.oid) / current_setting('block_size')::int
FROM unnest(%(oids)s::oid[]) WITH ORDINALITY AS r(oid, ord)
JOIN pg_class top ON top.oid = r.oid
JOIN pg_class c ON c.oid = ANY (
    CASE WHEN top.relkind = 'p'
         THEN ARRAY(SELECT t.relid::oid FROM pg_partition_tree(r.oid) t WHERE t.isleaf)
         ELSE ARRAY[r.oid] END)
JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def estimate_from_statistics(reltuples: float, relpages: int, pages: int) -> int | None:
    """Rows estimated as the planner does: the analyzed density scaled to the table's current size.

    None when statistics say nothing (never analyzed, or analyzed while empty) and the planner must guess.
    """
    if pages <= 0:
        return 0
    if reltuples >= 0 and relpages > 0:
        return round(reltuples / relpages * pages)
    return None


def _planner_estimate(conn: Connection, schema: str, relname: str) -> int:
    query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY {}").format(sql.Identifier(schema, relname))
    row = conn.execute(query).fetchone()
    plan = row[0] if row else None
    if isinstance(plan, str):
        plan = json.loads(plan)
    try:
        return int(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return 0


def estimate_rows(conn: Connection, tables: Sequence[str]) -> dict[str, int]:
    """Estimated counts from planner statistics (reltuples), cheap on any size of database.

    Tables never analyzed get the planner's own guess from their size; partitioned tables add up their
    partitions. The numbers are estimates and must be labelled so.
    """
    targets = resolve_tables(conn, tables)
    estimates = {target.name: 0 for target in targets}
    try:
        rows = conn.execute(_STATISTICS, {"oids": [t.oid for t in targets]}).fetchall()
        for ordinal, schema, relname, reltuples, relpages, pages in rows:
            estimate = estimate_from_statistics(float(reltuples), int(relpages), int(pages))
            if estimate is None:
                estimate = _planner_estimate(conn, schema, relname)
            estimates[targets[int(ordinal) - 1].name] += estimate
    except psycopg.Error as exc:
        raise PgwardenError(f"cannot estimate row counts: {describe_error(exc)}") from exc
    return estimates


def analyze_tables(conn: Connection, tables: Sequence[str]) -> None:
    """ANALYZE the named tables (a partitioned one with its partitions), so estimates describe what is there
    now: a freshly restored table has no statistics, and its estimate would be the planner's guess."""
    for target in resolve_tables(conn, tables):
        try:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(target.schema, target.relname)))
        except psycopg.Error as exc:
            raise CountFailed(f"analyzing {target.name} failed", exc) from exc
