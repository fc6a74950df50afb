"""Read a database's schema from its catalogs, and inspect it (tables, rows, sizes) for the command line.

Catalog reads run in a savepoint that is rolled back, with an empty search_path so that every name in a
definition comes out schema-qualified whatever the caller's settings; the caller's transaction (the
migration runner's uncommitted one, say) is left exactly as it was. Like pg_dump, a snapshot takes
ACCESS SHARE locks (the server's deparsing functions do), so it waits for a table another session holds
exclusively; listing tables does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import psycopg

from pgwarden.api.schema import (
    Column,
    Constraint,
    Extension,
    Function,
    Index,
    InspectReport,
    RowCounts,
    SchemaSnapshot,
    Sequence,
    Table,
    TableKind,
    TableRows,
    Trigger,
    UserType,
    View,
)
from pgwarden.engine.postgres.connect import connect, describe
from pgwarden.engine.postgres.counts import count_rows, estimate_rows
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.engine.postgres.schema_diff import fingerprint, qualified_name
from pgwarden.errors import BadInput, PgwardenError, ServerError

DEFAULT_OWN_SCHEMA = "pgwarden"
Connection = psycopg.Connection[Any]
OnCounted = Callable[[int, int], None]

# Applied to a pg_namespace row `n`: the user's schemas, as DESIGN.md section 4 scopes them.
_USER_NAMESPACE = """
    n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
    AND n.nspname <> %(own)s"""
# Applied to any catalog row: not created by an extension (pg_depend deptype 'e').
_NOT_EXTENSION_MEMBER = """
    NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass
                AND d.objid = {oid} AND d.deptype = 'e')"""


def _scoped(oid: str, catalog: str = "pg_class") -> str:
    return _USER_NAMESPACE + " AND" + _NOT_EXTENSION_MEMBER.format(catalog=catalog, oid=oid)


# ---- the user's tables -------------------------------------------------------------------------------

# Partitions are left out: their rows are counted through their parent, so totals never count them twice.
_USER_TABLES = f"""
SELECT n.nspname, c.relname, c.relkind = 'p' AS partitioned, {{size}}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_scoped("c.oid")}
"""
# Sizes take a lock on each table, so they are read only for inspect, never for a plain list.
_TABLE_SIZE = """
CASE WHEN c.relkind = 'p'
     THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
     ELSE pg_total_relation_size(c.oid) END"""


def _user_tables(conn: Connection, own_schema: str, *, sizes: bool) -> list[TableRows]:
    query = _USER_TABLES.format(size=_TABLE_SIZE if sizes else "NULL")
    rows = conn.execute(query, {"own": own_schema}).fetchall()
    tables = [
        TableRows(
            schema_=schema,
            table=qualified_name(schema, name),
            kind=TableKind.PARTITIONED if partitioned else TableKind.ORDINARY,
            size_bytes=None if size is None else int(size),
        )
        for schema, name, partitioned, size in rows
    ]
    return sorted(tables, key=lambda t: t.table)


def list_user_tables(conn: Connection, own_schema: str = DEFAULT_OWN_SCHEMA) -> list[str]:
    """The user's ordinary and partitioned tables (not partitions) as `schema.name`, quoted where needed."""
    return [t.table for t in _user_tables(conn, own_schema, sizes=False)]


def database_size(conn: Connection) -> int:
    """The size of the connected database on disk, in bytes."""
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


# ---- the snapshot --------------------------------------------------------------------------------------

_SCHEMAS = f"SELECT n.nspname FROM pg_namespace n WHERE {_scoped('n.oid', 'pg_namespace')}"

# Extensions living in pg_catalog (plpgsql) come with every database and are left out.
_EXTENSIONS = f"""
SELECT e.extname, e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE {_USER_NAMESPACE}
"""

_TYPES = f"""
SELECT n.nspname, t.typname, 'enum',
       (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
        FROM pg_enum e WHERE e.enumtypid = t.oid)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype = 'e' AND {_scoped("t.oid", "pg_type")}
UNION ALL
SELECT n.nspname, t.typname, 'domain',
       concat_ws(' ', format_type(t.typbasetype, t.typtypmod),
                 CASE WHEN t.typnotnull THEN 'NOT NULL' END,
                 'DEFAULT ' || t.typdefault,
                 (SELECT string_agg(pg_get_constraintdef(c.oid), ' ' ORDER BY c.conname)
                  FROM pg_constraint c WHERE c.contypid = t.oid))
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype = 'd' AND {_scoped("t.oid", "pg_type")}
"""

_TABLES = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind = 'p',
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE c.relispartition AND i.inhrelid = c.oid),
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {_scoped("c.oid")}
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
       CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END
FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_INDEXES = f"""
SELECT n.nspname, ic.relname, c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
       i.indisvalid
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND {_scoped("c.oid")}
"""

# NOT NULL constraints (contype 'n', PostgreSQL 18) are left out: nullability is a column property,
# and leaving them out keeps snapshots of the same schema equal across server versions.
_CONSTRAINTS = f"""
SELECT n.nspname, c.relname, con.conname,
       CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique'
            WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' WHEN 't' THEN 'trigger' ELSE con.contype::text END,
       pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype <> 'n' AND c.relkind IN ('r', 'p') AND {_scoped("c.oid")}
"""

_VIEWS = f"""
SELECT n.nspname, c.relname, c.relkind = 'm', pg_get_viewdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND {_scoped("c.oid")}
"""

# pg_get_functiondef refuses aggregates, which are described by their support functions instead.
_FUNCTIONS = f"""
SELECT n.nspname, p.proname,
       CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
            WHEN 'w' THEN 'window' END,
       pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,
       CASE WHEN p.prokind = 'a'
            THEN (SELECT concat_ws(' ', a.aggtransfn, a.aggfinalfn, a.aggcombinefn,
                                   format_type(a.aggtranstype, NULL), a.agginitval)
                  FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
            ELSE pg_get_functiondef(p.oid) END
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE {_scoped("p.oid", "pg_proc")}
"""

_SEQUENCES = f"""
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
       s.seqmax, s.seqcache, s.seqcycle
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_scoped("c.oid")}
"""

_TRIGGERS = f"""
SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled <> 'D'
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {_scoped("c.oid")}
"""


def take_snapshot(conn: Connection, *, own_schema: str = DEFAULT_OWN_SCHEMA) -> SchemaSnapshot:
    """The schema of the connected database; safe inside the caller's open transaction, which it leaves as is."""
    params = {"own": own_schema}
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('search_path', '', true)")
            return _read_snapshot(conn, params)
    except psycopg.Error as exc:
        raise ServerError(f"cannot read the schema: {describe_error(exc)}", exc.sqlstate) from exc


def _read_snapshot(conn: Connection, params: dict[str, str]) -> SchemaSnapshot:
    def rows(query: str) -> list[tuple[Any, ...]]:
        return conn.execute(query, params).fetchall()

    tables = rows(_TABLES)
    columns: dict[int, list[Column]] = {}
    for oid, name, type_, nullable, default, identity, generated in conn.execute(
        _COLUMNS, {"oids": [row[0] for row in tables]}
    ):
        columns.setdefault(oid, []).append(
            Column(
                name=name,
                type=type_,
                nullable=nullable,
                default=default,
                identity=identity,
                generated=generated,
            )
        )
    snapshot = SchemaSnapshot(
        schemas=sorted(row[0] for row in rows(_SCHEMAS)),
        extensions=[Extension(name=r[0], version=r[1], schema_=r[2]) for r in rows(_EXTENSIONS)],
        types=[UserType(schema_=r[0], name=r[1], kind=r[2], definition=r[3] or "") for r in rows(_TYPES)],
        tables=[
            Table(
                schema_=schema,
                name=name,
                kind=TableKind.PARTITIONED if partitioned else TableKind.ORDINARY,
                columns=columns.get(oid, []),
                partition_key=key,
                partition_of=parent,
                partition_bound=bound,
            )
            for oid, schema, name, partitioned, key, parent, bound in tables
        ],
        indexes=[
            Index(schema_=r[0], name=r[1], table=r[2], definition=r[3], unique=r[4], primary=r[5], valid=r[6])
            for r in rows(_INDEXES)
        ],
        constraints=[
            Constraint(schema_=r[0], table=r[1], name=r[2], type=r[3], definition=r[4])
            for r in rows(_CONSTRAINTS)
        ],
        views=[View(schema_=r[0], name=r[1], materialized=r[2], definition=r[3]) for r in rows(_VIEWS)],
        functions=[
            Function(
                schema_=r[0],
                name=r[1],
                kind=r[2],
                arguments=r[3],
                returns=r[4],
                language=r[5],
                definition_sha256=hashlib.sha256((r[6] or "").encode()).hexdigest(),
            )
            for r in rows(_FUNCTIONS)
        ],
        sequences=[
            Sequence(
                schema_=r[0],
                name=r[1],
                type=r[2],
                start=r[3],
                increment=r[4],
                min_value=r[5],
                max_value=r[6],
                cache=r[7],
                cycle=r[8],
            )
            for r in rows(_SEQUENCES)
        ],
        triggers=[
            Trigger(schema_=r[0], table=r[1], name=r[2], definition=r[3], enabled=r[4])
            for r in rows(_TRIGGERS)
        ],
    )
    return sort_snapshot(snapshot)


def sort_snapshot(snapshot: SchemaSnapshot) -> SchemaSnapshot:
    """The snapshot with every list in name order (columns stay in column order)."""
    return SchemaSnapshot(
        schemas=sorted(snapshot.schemas),
        extensions=sorted(snapshot.extensions, key=lambda e: e.name),
        types=sorted(snapshot.types, key=lambda t: (t.schema_, t.name)),
        tables=sorted(snapshot.tables, key=lambda t: (t.schema_, t.name)),
        indexes=sorted(snapshot.indexes, key=lambda i: (i.schema_, i.name)),
        constraints=sorted(snapshot.constraints, key=lambda c: (c.schema_, c.table, c.name)),
        views=sorted(snapshot.views, key=lambda v: (v.schema_, v.name)),
        functions=sorted(snapshot.functions, key=lambda f: (f.schema_, f.name, f.arguments)),
        sequences=sorted(snapshot.sequences, key=lambda s: (s.schema_, s.name)),
        triggers=sorted(snapshot.triggers, key=lambda t: (t.schema_, t.table, t.name)),
    )


def snapshot_database(url: str, *, own_schema: str = DEFAULT_OWN_SCHEMA) -> SchemaSnapshot:
    """Connect, take the schema snapshot, disconnect."""
    with connect(url) as conn:
        return take_snapshot(conn, own_schema=own_schema)


# ---- inspect -------------------------------------------------------------------------------------------


def inspect_database(
    url: str,
    *,
    counts: str = "exact",
    concurrency: int = 4,
    own_schema: str = DEFAULT_OWN_SCHEMA,
    on_counted: OnCounted | None = None,
) -> InspectReport:
    """What the database holds: tables, rows (exact, estimated or not counted), sizes and schema summary.

    Exact counts run on `concurrency` connections that all import this connection's exported snapshot,
    so every table is counted at the same moment. `on_counted(done, total)` reports progress.
    """
    try:
        mode = RowCounts(counts)
    except ValueError as exc:
        raise BadInput(f"unknown row count mode {counts!r}; use exact, estimate or none") from exc
    with connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            snapshot = take_snapshot(conn, own_schema=own_schema)
            per_table = _user_tables(conn, own_schema, sizes=True)
            size = database_size(conn)
            version = str(conn.execute("SELECT current_setting('server_version')").fetchone()[0])  # type: ignore[index]
            names = [t.table for t in per_table]
            rows: dict[str, int] | None = None
            if mode is RowCounts.EXACT:
                exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
                rows = count_rows(
                    url,
                    names,
                    concurrency=concurrency,
                    snapshot_id=str(exported[0]) if exported else None,
                    on_counted=on_counted,
                )
            elif mode is RowCounts.ESTIMATE:
                rows = estimate_rows(conn, names)
        except psycopg.Error as exc:
            raise PgwardenError(f"cannot inspect {describe(url)}: {describe_error(exc)}") from exc
    for table in per_table:
        table.rows = rows.get(table.table) if rows is not None else None
    return InspectReport(
        database=describe(url),
        server_version=version,
        size_bytes=size,
        tables=len(per_table),
        rows=sum(rows.values()) if rows is not None else None,
        row_counts=mode,
        estimated=mode is RowCounts.ESTIMATE,
        per_table=per_table,
        schema_fingerprint=fingerprint(snapshot),
        schemas=len(snapshot.schemas),
        partitions=sum(1 for t in snapshot.tables if t.partition_of),
        columns=sum(len(t.columns) for t in snapshot.tables),
        indexes=len(snapshot.indexes),
        invalid_indexes=sum(1 for i in snapshot.indexes if not i.valid),
        constraints=len(snapshot.constraints),
        views=sum(1 for v in snapshot.views if not v.materialized),
        materialized_views=sum(1 for v in snapshot.views if v.materialized),
        functions=len(snapshot.functions),
        sequences=len(snapshot.sequences),
        triggers=len(snapshot.triggers),
        types=len(snapshot.types),
        extensions=len(snapshot.extensions),
    )
