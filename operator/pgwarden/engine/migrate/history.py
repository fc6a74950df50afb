"""The history table `<schema>.schema_history` and the schema state recorded after each run (for drift)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

DEFAULT_SCHEMA = "pgwarden"


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history table, as the planner sees it."""

    version: str
    description: str
    checksum: str | None
    success: bool
    kind: str
    error: str | None = None


@dataclass(frozen=True)
class RecordedState:
    """The schema fingerprint (and the snapshot it came from) recorded after the previous run."""

    fingerprint: str
    snapshot: dict[str, Any]
    version: str | None


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def ensure_tables(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> None:
    """Create the history schema and tables when missing (inside the caller's transaction)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                installed_rank bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                version text NOT NULL,
                description text NOT NULL,
                type text NOT NULL DEFAULT 'SQL',
                script text NOT NULL,
                checksum text,
                installed_by text NOT NULL DEFAULT current_user,
                installed_on timestamptz NOT NULL DEFAULT now(),
                execution_ms integer NOT NULL DEFAULT 0,
                success boolean NOT NULL,
                error text
            )"""
        ).format(_ident(schema, "schema_history"))
    )
    conn.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                recorded_on timestamptz NOT NULL DEFAULT now(),
                version text,
                fingerprint text NOT NULL,
                snapshot jsonb NOT NULL
            )"""
        ).format(_ident(schema, "schema_state"))
    )


def history_exists(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".schema_history',)).fetchone()
    return bool(row and row[0])


def read_history(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> list[HistoryRow]:
    """Every history row in installation order; empty when the table does not exist yet."""
    if not history_exists(conn, schema):
        return []
    rows = conn.execute(
        sql.SQL(
            "SELECT version, description, checksum, success, type, error FROM {} ORDER BY installed_rank"
        ).format(_ident(schema, "schema_history"))
    ).fetchall()
    return [HistoryRow(str(v), str(d), c, bool(s), str(t), e) for v, d, c, s, t, e in rows]


def record_migration(
    conn: psycopg.Connection[Any],
    *,
    version: str,
    description: str,
    script: str,
    checksum: str | None,
    execution_ms: int,
    success: bool = True,
    kind: str = "SQL",
    error: str | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (version, description, type, script, checksum, execution_ms, success, error)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(_ident(schema, "schema_history")),
        (version, description, kind, script, checksum, execution_ms, success, error),
    )


STARTED = "started; the run ended before this statement finished"
"""The error text of the row written before a statement that commits on its own (outside a transaction)."""


def record_started(
    conn: psycopg.Connection[Any],
    *,
    version: str,
    description: str,
    script: str,
    checksum: str | None,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    """Before a statement that commits on its own: a row saying it started, so a run killed while it runs
    leaves a history that says so, and the rerun knows the statement may have taken effect."""
    record_migration(
        conn,
        version=version,
        description=description,
        script=script,
        checksum=checksum,
        execution_ms=0,
        success=False,
        error=STARTED,
        schema=schema,
    )


def finish_started(
    conn: psycopg.Connection[Any],
    version: str,
    *,
    execution_ms: int,
    error: str | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    """Turn the started rows of `version` into its outcome: applied, or failed with `error`."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET success = %s, error = %s, execution_ms = %s, installed_on = now()"
            " WHERE version = %s AND NOT success AND error = %s"
        ).format(_ident(schema, "schema_history")),
        (error is None, error, execution_ms, version, STARTED),
    )


def interrupted(rows: list[HistoryRow]) -> set[str]:
    """Versions whose last row says a statement outside a transaction started and never finished."""
    last: dict[str, HistoryRow] = {}
    for row in rows:
        last[row.version] = row
    return {version for version, row in last.items() if not row.success and row.error == STARTED}


def forget_migration(conn: psycopg.Connection[Any], version: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Remove a version's successful rows after its down script ran."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE version = %s AND success").format(_ident(schema, "schema_history")),
        (version,),
    )


def record_state(
    conn: psycopg.Connection[Any],
    *,
    fingerprint: str,
    snapshot: dict[str, Any],
    version: str | None,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} (version, fingerprint, snapshot) VALUES (%s, %s, %s)").format(
            _ident(schema, "schema_state")
        ),
        (version, fingerprint, json.dumps(snapshot)),
    )


def last_state(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> RecordedState | None:
    if not history_exists(conn, schema):
        return None
    row = conn.execute(
        sql.SQL("SELECT fingerprint, snapshot, version FROM {} ORDER BY id DESC LIMIT 1").format(
            _ident(schema, "schema_state")
        )
    ).fetchone()
    if row is None:
        return None
    snapshot = row[1] if isinstance(row[1], dict) else json.loads(row[1])
    return RecordedState(fingerprint=str(row[0]), snapshot=snapshot, version=row[2])


def current_version(rows: list[HistoryRow]) -> str | None:
    """The highest successfully applied (or baselined) version."""
    applied = [r.version for r in rows if r.success]
    if not applied:
        return None
    return max(applied, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.replace("_", ".").split(".") if part.isdigit())
