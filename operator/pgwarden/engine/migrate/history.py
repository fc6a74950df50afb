"""The history table `<schema>.schema_history` and the schema state recorded after each run (for drift).

A file that runs outside a transaction runs statement by statement; its history row says how many of its
statements are applied (`statements_applied` of `statements_total`, with a digest of their text) and which one
was running when the run ended (`statement_running`), so the next run resumes at that statement, as Atlas
counts the applied statements of a file.
"""

from __future__ import annotations

import hashlib
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
    statements_applied: int | None = None
    statements_total: int | None = None
    statement_running: int | None = None
    statements_digest: str | None = None


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
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS statements_total integer,"
            " ADD COLUMN IF NOT EXISTS statements_applied integer,"
            " ADD COLUMN IF NOT EXISTS statement_running integer,"
            " ADD COLUMN IF NOT EXISTS statements_digest text"
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
    """Every history row in installation order; empty when the table does not exist yet. Read as JSON, so a
    table from before the statement columns reads too (they are added by the next run)."""
    if not history_exists(conn, schema):
        return []
    rows = conn.execute(
        sql.SQL("SELECT to_jsonb(h) FROM {} h ORDER BY installed_rank").format(
            _ident(schema, "schema_history")
        )
    ).fetchall()
    return [_row(r[0] if isinstance(r[0], dict) else json.loads(r[0])) for r in rows]


def _row(data: dict[str, Any]) -> HistoryRow:
    return HistoryRow(
        version=str(data["version"]),
        description=str(data["description"]),
        checksum=data.get("checksum"),
        success=bool(data["success"]),
        kind=str(data.get("type") or "SQL"),
        error=data.get("error"),
        statements_applied=data.get("statements_applied"),
        statements_total=data.get("statements_total"),
        statement_running=data.get("statement_running"),
        statements_digest=data.get("statements_digest"),
    )


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
"""The error text of a row whose file runs outside a transaction while its run is under way (or died)."""


def statements_digest(texts: list[str]) -> str:
    """A digest of the statements applied so far: a rerun resumes only when they are still the same (pure)."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def _last_row_of(schema: str) -> sql.Composed:
    """WHERE clause naming the last history row of a version (parameter: the version, twice)."""
    return sql.SQL(
        "installed_rank = (SELECT max(installed_rank) FROM {} WHERE version = %s) AND version = %s"
    ).format(_ident(schema, "schema_history"))


def record_started(
    conn: psycopg.Connection[Any],
    *,
    version: str,
    description: str,
    script: str,
    checksum: str | None,
    statements_total: int,
    resumed: bool,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    """Before the first statement of a file that runs outside a transaction: a row saying it started (or,
    resuming, its last row started again), so a run killed part-way leaves a history that says so."""
    if resumed:
        conn.execute(
            sql.SQL("UPDATE {} SET error = %s, installed_on = now(), checksum = %s WHERE ").format(
                _ident(schema, "schema_history")
            )
            + _last_row_of(schema),
            (STARTED, checksum, version, version),
        )
        return
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (version, description, type, script, checksum, execution_ms, success, error,"
            " statements_total, statements_applied) VALUES (%s, %s, 'SQL', %s, %s, 0, false, %s, %s, 0)"
        ).format(_ident(schema, "schema_history")),
        (version, description, script, checksum, STARTED, statements_total),
    )


def statement_started(
    conn: psycopg.Connection[Any], version: str, number: int, schema: str = DEFAULT_SCHEMA
) -> None:
    """Statement `number` (1-based) of the file is about to run: if the run dies now, it may have taken effect."""
    conn.execute(
        sql.SQL("UPDATE {} SET statement_running = %s WHERE ").format(_ident(schema, "schema_history"))
        + _last_row_of(schema),
        (number, version, version),
    )


def statement_finished(
    conn: psycopg.Connection[Any], version: str, applied: int, digest: str, schema: str = DEFAULT_SCHEMA
) -> None:
    """The first `applied` statements of the file have taken effect (`digest` of their text)."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET statements_applied = %s, statements_digest = %s, statement_running = NULL WHERE "
        ).format(_ident(schema, "schema_history"))
        + _last_row_of(schema),
        (applied, digest, version, version),
    )


def finish_started(
    conn: psycopg.Connection[Any],
    version: str,
    *,
    execution_ms: int,
    error: str | None = None,
    effect_unknown: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> None:
    """Turn the started row of `version` into its outcome: applied, or failed with `error` (the statement that
    failed left nothing, unless `effect_unknown`: the connection went with it)."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET success = %s, error = %s, execution_ms = %s, installed_on = now(),"
            " statement_running = CASE WHEN %s THEN statement_running END WHERE "
        ).format(_ident(schema, "schema_history"))
        + _last_row_of(schema),
        (error is None, error, execution_ms, effect_unknown, version, version),
    )


def forget_statement(conn: psycopg.Connection[Any], version: str, schema: str = DEFAULT_SCHEMA) -> str:
    """The SQL that forgets `version` once its down script ran: its applied rows go, a partly applied row
    says nothing is applied (for the undo recipe the journal keeps; one statement, values inlined)."""
    table = _ident(schema, "schema_history")
    return (
        sql.SQL(
            "WITH gone AS (DELETE FROM {} WHERE version = {} AND success RETURNING 1)"
            " UPDATE {} SET statements_applied = 0, statements_digest = NULL, statement_running = NULL"
            " WHERE version = {} AND NOT success"
        )
        .format(table, sql.Literal(version), table, sql.Literal(version))
        .as_string(conn)
    )


def last_state_id(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> int:
    """The id of the newest recorded schema state (0: none)."""
    if not history_exists(conn, schema):
        return 0
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(_ident(schema, "schema_state"))
    ).fetchone()
    return int(row[0]) if row else 0


def forget_states_statement(
    conn: psycopg.Connection[Any], after_id: int, schema: str = DEFAULT_SCHEMA
) -> str:
    """The SQL that forgets the schema states recorded after `after_id` (a run's, once it is undone, so the
    state before it is the one drift is judged by again)."""
    return (
        sql.SQL("DELETE FROM {} WHERE id > {}")
        .format(_ident(schema, "schema_state"), sql.Literal(after_id))
        .as_string(conn)
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
