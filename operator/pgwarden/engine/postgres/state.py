"""A database's state at one moment, as a migration run needs it: tables, row counts, schema fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from pgwarden.api.reports import Difference
from pgwarden.api.schema import SchemaSnapshot
from pgwarden.api.verify import RowCountMode
from pgwarden.engine.postgres import counts
from pgwarden.engine.postgres.inspect import list_user_tables, take_snapshot
from pgwarden.engine.postgres.schema_diff import (
    diff_snapshots,
    fingerprint,
    snapshot_from_json,
    snapshot_to_json,
)


@dataclass(frozen=True)
class SchemaState:
    """Tables, their row counts (empty when not counted) and the schema snapshot with its fingerprint."""

    tables: list[str]
    row_counts: dict[str, int]
    snapshot: SchemaSnapshot
    fingerprint: str

    @property
    def total_rows(self) -> int | None:
        return sum(self.row_counts.values()) if self.row_counts or not self.tables else None

    @property
    def snapshot_json(self) -> dict[str, Any]:
        return snapshot_to_json(self.snapshot)


def capture_state(
    conn: psycopg.Connection[Any],
    url: str,
    *,
    mode: RowCountMode,
    own_schema: str,
    snapshot_id: str | None = None,
    concurrency: int = 4,
    in_transaction: bool = False,
) -> SchemaState:
    """The state seen by `conn`'s open transaction.

    Exact counts of the committed state run in parallel on other connections that import the
    transaction's exported snapshot; counts after changes run on `conn` itself, since no other
    session can see its uncommitted work.
    """
    snapshot = take_snapshot(conn, own_schema=own_schema)
    tables = list_user_tables(conn, own_schema=own_schema)
    row_counts = _count(
        conn,
        url,
        tables,
        mode,
        snapshot_id=snapshot_id,
        concurrency=concurrency,
        same_connection=in_transaction,
    )
    return SchemaState(
        tables=tables, row_counts=row_counts, snapshot=snapshot, fingerprint=fingerprint(snapshot)
    )


def count_tables(
    conn: psycopg.Connection[Any], url: str, *, mode: RowCountMode, own_schema: str
) -> dict[str, int]:
    """Row counts of the committed state, for reporting after a failure (zeros when not counting)."""
    tables = list_user_tables(conn, own_schema=own_schema)
    counted = _count(conn, url, tables, mode, snapshot_id=None, concurrency=4, same_connection=False)
    return {table: counted.get(table, 0) for table in tables}


def _count(
    conn: psycopg.Connection[Any],
    url: str,
    tables: list[str],
    mode: RowCountMode,
    *,
    snapshot_id: str | None,
    concurrency: int,
    same_connection: bool,
) -> dict[str, int]:
    if mode == RowCountMode.NONE or not tables:
        return {}
    if mode == RowCountMode.ESTIMATE:
        return counts.estimate_rows(conn, tables)
    if same_connection:
        return counts.count_rows_in_transaction(conn, tables)
    return counts.count_rows(url, tables, concurrency=concurrency, snapshot_id=snapshot_id)


def drift_since(recorded: dict[str, Any], live: SchemaState) -> dict[str, Any]:
    """The differences between the schema recorded after the previous run and the live one."""
    previous = snapshot_from_json(recorded)
    if fingerprint(previous) == live.fingerprint:
        return {"detected": False, "differences": []}
    differences = [_as_drift(d) for d in diff_snapshots(previous, live.snapshot)]
    return {"detected": bool(differences), "differences": differences}


_DRIFT_WORDING = {"only in A": "removed since the last run", "only in B": "added since the last run"}


def _as_drift(difference: Difference) -> Difference:
    """A recorded-vs-live difference in drift's words (A is the recorded schema, B the live one)."""
    detail = _DRIFT_WORDING.get(difference.detail, difference.detail)
    return difference.model_copy(update={"detail": detail})
