"""The indexes a CREATE INDEX CONCURRENTLY leaves behind: INVALID when it failed part-way, which the next try
must drop (only the one that statement made) before `IF NOT EXISTS` would silently keep it."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.engine.migrate.sqlscript import Statement

log = logging.getLogger(__name__)
Connection = psycopg.Connection[Any]

_VALIDITY = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)"
_INVALID_OF_TABLE = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass(%s) AND NOT indisvalid"
)


def validity(conn: Connection, statement: Statement) -> bool | None:
    """Whether the index a named CREATE INDEX CONCURRENTLY builds exists and is valid (None: it does not exist,
    or the statement names no index)."""
    if not statement.concurrent_index:
        return None
    row = conn.execute(_VALIDITY, (statement.concurrent_index,)).fetchone()
    return None if row is None else bool(row[0])


def invalid_left_by(conn: Connection, statement: Statement) -> set[str]:
    """The INVALID index a CREATE INDEX CONCURRENTLY names, or every INVALID index of its table."""
    if conn.closed or conn.broken:
        return set()
    if statement.concurrent_index:
        return {statement.concurrent_index} if validity(conn, statement) is False else set()
    if statement.concurrent_index_table:
        rows = conn.execute(_INVALID_OF_TABLE, (statement.concurrent_index_table,)).fetchall()
        return {str(row[0]) for row in rows}
    return set()


def drop(conn: Connection, indexes: set[str]) -> None:
    """DROP INDEX CONCURRENTLY each (names as `to_regclass` reads them: quoted where they need it)."""
    for index in sorted(indexes):
        log.info("dropping the INVALID index %s left by a failed CREATE INDEX CONCURRENTLY", index)
        regclass = conn.execute("SELECT to_regclass(%s)::oid", (index,)).fetchone()
        if not regclass or regclass[0] is None:
            continue
        name = conn.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
            (regclass[0],),
        ).fetchone()
        if name:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(str(name[0]))))


def drop_hint(statement: Statement) -> str:
    """The statement a person runs to drop an INVALID index pgwarden did not make (pure)."""
    return f"DROP INDEX CONCURRENTLY {statement.concurrent_index};"
