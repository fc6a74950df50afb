"""The names a partial restore gives what it restores, and whether the target database has them already.

In the scratch database, where the chosen tables were restored under their backup names, a suffix is
appended to each table, its partitions, its constraints, indexes and owned sequences (or, for a schema
restored whole, to the schema), so they can stand beside today's. What they are called in the end is read
back from the catalog, never guessed, and looked for in the target before anything there is changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.engine.postgres.connect import connect
from pgwarden.engine.postgres.schema_diff import qualified_name
from pgwarden.engine.restore.selection import TableName, with_suffix

Connection = psycopg.Connection[Any]

_CONSTRAINTS = """
SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype IN ('p', 'u', 'x', 'f', 'c') ORDER BY conname
"""
# Indexes of their own (a primary key's or unique constraint's index is renamed with its constraint).
_INDEXES = """
SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = %s AND NOT EXISTS (
    SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
    AND k.contype IN ('p', 'u', 'x'))
ORDER BY 1, 2
"""
_ALL_INDEXES = """
SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indrelid = %s ORDER BY 1, 2
"""
# Sequences a table owns: serial columns ('a') and identity columns ('i').
_OWNED_SEQUENCES = """
SELECT n.nspname, s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
JOIN pg_namespace n ON n.oid = s.relnamespace
WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
ORDER BY 1, 2
"""
_PARTITIONS = """
SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s ORDER BY 1, 2
"""
_TAKEN = """
SELECT u.schema, u.name FROM unnest(%s::text[], %s::text[]) AS u(schema, name)
JOIN pg_namespace n ON n.nspname = u.schema JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.name
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Placement:
    """Where the restored objects stand once named: each chosen table's final name, the tables (and
    partitions) to move one by one, the schemas to move whole, and every relation name they bring."""

    tables: dict[TableName, TableName]
    relations: list[TableName] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    names: list[TableName] = field(default_factory=list)


def final_names(
    tables: Sequence[TableName], schemas: Sequence[str], suffix: str | None
) -> dict[TableName, TableName]:
    """Each chosen table's name after the restore: a schema restored whole takes the suffix, a table named
    on its own takes it itself (pure)."""
    if not suffix:
        return {t: t for t in tables}
    return {
        t: TableName(with_suffix(t.schema, suffix), t.name)
        if t.schema in schemas
        else TableName(t.schema, with_suffix(t.name, suffix))
        for t in tables
    }


def _oid(conn: Connection, table: TableName) -> int:
    row = conn.execute("SELECT %s::regclass::oid", [str(table)]).fetchone()
    assert row is not None
    return int(row[0])


def _rename_table(conn: Connection, table: TableName, suffix: str) -> None:
    """The table, its partitions, constraints, own indexes and owned sequences, each with the suffix."""
    oid = _oid(conn, table)
    for partition_schema, partition in conn.execute(_PARTITIONS, [oid]).fetchall():
        _rename_table(conn, TableName(partition_schema, partition), suffix)
    target = sql.Identifier(table.schema, table.name)
    for (name,) in conn.execute(_CONSTRAINTS, [oid]).fetchall():
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                target, sql.Identifier(name), sql.Identifier(with_suffix(name, suffix))
            )
        )
    for query, kind in ((_INDEXES, "INDEX"), (_OWNED_SEQUENCES, "SEQUENCE")):
        for schema, name in conn.execute(query, [oid]).fetchall():
            conn.execute(
                sql.SQL("ALTER {} {} RENAME TO {}").format(
                    sql.SQL(kind), sql.Identifier(schema, name), sql.Identifier(with_suffix(name, suffix))
                )
            )
    conn.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(target, sql.Identifier(with_suffix(table.name, suffix)))
    )


def _with_partitions(conn: Connection, table: TableName) -> list[TableName]:
    """The table and its partitions, to any depth."""
    found = [table]
    for schema, name in conn.execute(_PARTITIONS, [_oid(conn, table)]).fetchall():
        found += _with_partitions(conn, TableName(schema, name))
    return found


def place(
    scratch_url: str, tables: Sequence[TableName], schemas: Sequence[str], suffix: str | None
) -> Placement:
    """Rename what the scratch database holds (one transaction) and read back every name it brings."""
    final = final_names(tables, schemas, suffix)
    alone = [t for t in tables if t.schema not in schemas]
    with connect(scratch_url) as conn:
        if suffix:
            for schema in schemas:
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(schema), sql.Identifier(with_suffix(schema, suffix))
                    )
                )
            for table in alone:
                _rename_table(conn, table, suffix)
        relations: list[TableName] = []
        names: list[TableName] = []
        for table in alone:
            relations += _with_partitions(conn, final[table])
        for relation in relations:
            oid = _oid(conn, relation)
            names.append(relation)
            for query in (_ALL_INDEXES, _OWNED_SEQUENCES):
                names += [TableName(str(s), str(n)) for s, n in conn.execute(query, [oid]).fetchall()]
        conn.commit()
    moved_schemas = [with_suffix(s, suffix) if suffix else s for s in schemas]
    return Placement(final, relations, moved_schemas, sorted(set(names)))


def taken(url: str, placement: Placement) -> list[str]:
    """What the target already has under the names the restore would give: schemas and relations."""
    found: list[str] = []
    with connect(url) as conn:
        if placement.schemas:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", [placement.schemas]
            ).fetchall()
            found += [f"schema {qualified_name(str(name))}" for (name,) in rows]
        if placement.names:
            rows = conn.execute(
                _TAKEN, [[n.schema for n in placement.names], [n.name for n in placement.names]]
            ).fetchall()
            found += [str(TableName(str(schema), str(name))) for schema, name in rows]
    return found
