"""Which tables a dump holds: pg_dump's -n/-N/-t/-T rules, so the row counts cover exactly the dumped tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from pgwarden.engine.postgres.inspect import list_user_tables
from pgwarden.engine.postgres.schema_diff import qualified_name


@dataclass(frozen=True)
class DumpSelection:
    """Schemas and tables to include or exclude, as pg_dump patterns (`public`, `audit_*`, `shop.orders`)."""

    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.schemas or self.exclude_schemas or self.tables or self.exclude_tables)

    def pg_dump_args(self) -> list[str]:
        return (
            [f"--schema={p}" for p in self.schemas]
            + [f"--exclude-schema={p}" for p in self.exclude_schemas]
            + [f"--table={p}" for p in self.tables]
            + [f"--exclude-table={p}" for p in self.exclude_tables]
        )


def pattern_parts(pattern: str) -> list[str]:
    """A pg_dump name pattern as anchored regexes, one per dot-separated part (as psql's `\\d` reads them):
    unquoted letters fold to lower case, `*` and `?` are wildcards, double quotes keep text literal."""
    parts: list[list[str]] = [[]]
    quoted, i = False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if quoted and pattern[i + 1 : i + 2] == '"':
                parts[-1].append('"')
                i += 2
                continue
            quoted = not quoted
        elif not quoted and ch == ".":
            parts.append([])
        elif not quoted and ch == "*":
            parts[-1].append(".*")
        elif not quoted and ch == "?":
            parts[-1].append(".")
        else:
            parts[-1].append(re.escape(ch if quoted else ch.lower()))
        i += 1
    return [f"^(?:{''.join(part)})$" for part in parts]


def _matches(pattern: str, schema: str, name: str | None, visible: bool) -> bool:
    parts = pattern_parts(pattern)
    if name is None:  # a schema pattern: the last part names the schema ([db.]schema)
        return re.match(parts[-1], schema) is not None
    if len(parts) == 1:  # an unqualified table pattern matches tables visible on the search_path
        return visible and re.match(parts[0], name) is not None
    return re.match(parts[-2], schema) is not None and re.match(parts[-1], name) is not None


def select_tables(tables: list[tuple[str, str, bool]], selection: DumpSelection) -> list[tuple[str, str]]:
    """The (schema, name) of the tables pg_dump dumps, from (schema, name, visible on search_path).

    pg_dump's rules: with -t only matching tables (-n/-N then have no effect); otherwise tables in schemas
    matching -n (all schemas without -n) and not -N; -T always excludes. Partitions are counted through
    their parent, so select a partitioned table together with its partitions (`events*`), as pg_dump
    matches each relation on its own."""
    chosen = []
    for schema, name, visible in tables:
        if selection.tables:
            keep = any(_matches(p, schema, name, visible) for p in selection.tables)
        else:
            keep = not selection.schemas or any(_matches(p, schema, None, True) for p in selection.schemas)
            keep = keep and not any(_matches(p, schema, None, True) for p in selection.exclude_schemas)
        if keep and not any(_matches(p, schema, name, visible) for p in selection.exclude_tables):
            chosen.append((schema, name))
    return chosen


_TABLES_WITH_VISIBILITY = """
SELECT n.nspname, c.relname, pg_table_is_visible(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


def dumped_tables(
    conn: psycopg.Connection[tuple[object, ...]], selection: DumpSelection
) -> tuple[list[str], set[str]]:
    """The user's tables (as `list_user_tables` names them) that a dump with `selection` contains, and
    the schemas they live in when the dump itself leaves schemas out (pg_dump -t does)."""
    tables = list_user_tables(conn)
    if not selection:
        return tables, set()
    rows = conn.execute(_TABLES_WITH_VISIBILITY).fetchall()
    chosen = {
        qualified_name(str(s), str(n))
        for s, n in select_tables([(str(s), str(n), bool(v)) for s, n, v in rows], selection)
    }
    schemas = (
        {str(s) for s, n, v in rows if qualified_name(str(s), str(n)) in chosen}
        if selection.tables
        else set()
    )
    return [table for table in tables if table in chosen], schemas
