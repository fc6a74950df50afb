"""What a partial restore takes from an archive: names as people write them in SQL, the archive's table of
contents as `pg_restore -l -v` lists it, and the entries to restore. Pure: no I/O.

The entries follow from dependencies, never from names: a table brings every entry that depends on it and
belongs to it (its data, indexes, constraints, triggers, defaults, owned sequences, comments, grants,
policies, partitions), and everything those need that a scratch database lacks (schemas, types, functions).
A foreign key comes only when every table it joins is restored; the others are left out and said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pglast import parse_sql
from pglast.parser import ParseError

from pgwarden.engine.postgres.schema_diff import qualified_name

# Entries that belong to the table they depend on: restored with it, and only with it.
PARTS_OF_A_TABLE = frozenset(
    {
        "TABLE DATA",
        "INDEX",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "TRIGGER",
        "DEFAULT",
        "SEQUENCE",  # an identity column's sequence depends on its table
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "COMMENT",
        "SECURITY LABEL",
        "ACL",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "STATISTICS",
        "STATISTICS DATA",
        "INDEX ATTACH",
        "TABLE ATTACH",
    }
)
# Session settings every restore applies first.
SETTINGS = frozenset({"ENCODING", "STDSTRINGS", "SEARCHPATH"})
# Entries that are never a prerequisite: content, not definitions.
NOT_PREREQUISITES = frozenset(
    {"TABLE DATA", "SEQUENCE SET", "FK CONSTRAINT", "DATABASE", "DATABASE PROPERTIES"}
)
_ENTRY = re.compile(r"^(?P<id>\d+); (?P<catalog>\d+) (?P<oid>\d+) (?P<rest>.*)$")
_DEPENDS = re.compile(r"^;\s*depends on:(?P<ids>( \d+)*)\s*$")
# pg_dump's entry kinds, longest first so "FK CONSTRAINT" is not read as "FK" and "CONSTRAINT".
_DESCS = sorted(
    PARTS_OF_A_TABLE
    | SETTINGS
    | {
        "TABLE",
        "VIEW",
        "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA",
        "FOREIGN TABLE",
        "SCHEMA",
        "TYPE",
        "DOMAIN",
        "FUNCTION",
        "PROCEDURE",
        "AGGREGATE",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "COLLATION",
        "CONVERSION",
        "EXTENSION",
        "CAST",
        "SHELL TYPE",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "FOREIGN DATA WRAPPER",
        "SERVER",
        "USER MAPPING",
        "EVENT TRIGGER",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION",
        "DEFAULT ACL",
        "LARGE OBJECT",
        "BLOB",
        "BLOBS",
        "LARGE OBJECTS",
        "PROCEDURAL LANGUAGE",
        "ACCESS METHOD",
        "DATABASE",
        "DATABASE PROPERTIES",
    },
    key=len,
    reverse=True,
)


@dataclass(frozen=True, order=True)
class TableName:
    """A table by its schema and name, exactly as the catalog holds them."""

    schema: str
    name: str

    def __str__(self) -> str:
        return qualified_name(self.schema, self.name)


def parse_name(text: str) -> tuple[str | None, str]:
    """`[schema.]name` as SQL reads it (unquoted folded to lower case, "Quoted" kept as is), by PostgreSQL's
    own parser; ValueError for anything else."""
    try:
        statements = parse_sql(f"SELECT FROM {text}")
    except ParseError:
        statements = ()
    ranges = getattr(statements[0].stmt, "fromClause", None) if len(statements) == 1 else None
    if not text.strip() or not ranges or len(ranges) != 1 or type(ranges[0]).__name__ != "RangeVar":
        raise ValueError(f'{text!r} is not a table name; write it as in SQL, e.g. orders or "Sales Ops"."Q1"')
    found = ranges[0]
    if found.catalogname or found.alias or not found.inh:
        raise ValueError(f"{text!r} is not a table name; write schema.table or table")
    return found.schemaname, found.relname


def parse_schema(text: str) -> str:
    """A schema name as SQL reads it; ValueError for a qualified name or anything else."""
    schema, name = parse_name(text)
    if schema is not None:
        raise ValueError(f'{text!r} is not a schema name; a schema has no dot, e.g. sales or "Sales Ops"')
    return name


def manifest_tables(per_table: Iterable[str]) -> dict[TableName, str]:
    """The tables a backup's manifest counted, each with its key there (`schema.name`, quoted where needed)."""
    tables = {}
    for key in per_table:
        schema, name = parse_name(key)
        tables[TableName(schema or "public", name)] = key
    return dict(sorted(tables.items()))


@dataclass(frozen=True)
class Selection:
    """What to restore: whole schemas, and tables (schema-qualified or not), as the user named them."""

    schemas: tuple[str, ...] = ()
    tables: tuple[tuple[str | None, str], ...] = ()

    @classmethod
    def parse(cls, schemas: Sequence[str], tables: Sequence[str]) -> Selection:
        """From `--schema`/`--table` (or spec.only); ValueError says which name is not one."""
        return cls(tuple(parse_schema(s) for s in schemas), tuple(parse_name(t) for t in tables))

    def __bool__(self) -> bool:
        return bool(self.schemas or self.tables)


def choose_tables(selection: Selection, available: Sequence[TableName]) -> list[TableName]:
    """The backup's tables the selection names, in order; ValueError when a name matches none of them, or
    an unqualified one matches tables in several schemas."""
    chosen: set[TableName] = set()
    for schema in selection.schemas:
        inside = [t for t in available if t.schema == schema]
        if not inside:
            raise ValueError(f"the backup has no table in schema {qualified_name(schema)}")
        chosen.update(inside)
    for schema_or_none, name in selection.tables:
        matches = [t for t in available if t.name == name and schema_or_none in (None, t.schema)]
        shown = qualified_name(schema_or_none, name) if schema_or_none else qualified_name(name)
        if not matches:
            raise ValueError(f"the backup has no table {shown}; `pgwarden backups --json` lists its tables")
        if len(matches) > 1:
            raise ValueError(
                f"{shown} names tables in several schemas ({', '.join(map(str, matches))}); qualify it"
            )
        chosen.update(matches)
    return sorted(chosen)


@dataclass(frozen=True)
class TocEntry:
    """One entry of an archive's table of contents: its id, kind, the rest of its line (namespace, tag,
    owner: names may hold spaces, so only known prefixes are ever matched) and the ids it depends on."""

    dump_id: int
    desc: str
    rest: str
    deps: tuple[int, ...] = ()

    def in_namespace(self, schema: str) -> bool:
        return self.rest.startswith(f"{schema} ")

    def is_table(self, table: TableName) -> bool:
        return self.desc == "TABLE" and self.rest.startswith(f"{table.schema} {table.name} ")

    def is_schema(self, schema: str) -> bool:
        return self.desc == "SCHEMA" and self.rest.startswith(f"- {schema} ")


def parse_toc(listing: str) -> list[TocEntry]:
    """`pg_restore -l -v` output as entries, in archive order (the `depends on` lines follow their entry)."""
    entries: list[TocEntry] = []
    for line in listing.splitlines():
        if (depends := _DEPENDS.match(line)) and entries:
            last = entries[-1]
            ids = tuple(int(i) for i in depends.group("ids").split())
            entries[-1] = TocEntry(last.dump_id, last.desc, last.rest, last.deps + ids)
            continue
        if not (match := _ENTRY.match(line)):
            continue
        text = match.group("rest")
        desc = next((d for d in _DESCS if text == d or text.startswith(f"{d} ")), text.split(" ", 1)[0])
        entries.append(TocEntry(int(match.group("id")), desc, text[len(desc) :].lstrip(" ")))
    return entries


@dataclass(frozen=True)
class ArchivePlan:
    """The entries a scratch database gets (in archive order), the relations restored under their names
    (tables and their partitions), and what was left out and why."""

    entries: list[TocEntry]
    tables: list[TableName]
    relations: list[int]
    left_out: list[str] = field(default_factory=list)

    def listing(self) -> str:
        """The list for `pg_restore -L`: one entry id a line, in archive order."""
        return "".join(f"{entry.dump_id};\n" for entry in self.entries)


def _table_ids(entries: Sequence[TocEntry], tables: Sequence[TableName]) -> dict[TableName, int]:
    """The TABLE entry of each table; ValueError when the archive lists one twice or not at all."""
    found: dict[TableName, int] = {}
    for table in tables:
        ids = [e.dump_id for e in entries if e.is_table(table)]
        if len(ids) != 1:
            raise ValueError(f"the archive lists table {table} {len(ids)} times; restore it whole")
        found[table] = ids[0]
    return found


def plan_entries(
    entries: Sequence[TocEntry], tables: Sequence[TableName], schemas: Sequence[str]
) -> ArchivePlan:
    """The entries to restore for `tables` (with `schemas` whole): each table, its partitions and every
    part of them, the schemas' other objects, and the prerequisites of all of those."""
    by_id = {e.dump_id: e for e in entries}
    relations = set(_table_ids(entries, tables).values())
    changed = True
    while changed:  # partitions attach to a chosen table: theirs too, to any depth
        attached = {
            dep
            for e in entries
            if e.desc == "TABLE ATTACH" and relations & set(e.deps)
            for dep in e.deps
            if dep in by_id and by_id[dep].desc == "TABLE"
        }
        changed = not attached <= relations
        relations |= attached
    chosen = set(relations)
    chosen |= {e.dump_id for e in entries if any(e.in_namespace(s) or e.is_schema(s) for s in schemas)}
    left_out: list[str] = []
    changed = True
    while changed:  # the parts of what is chosen: data, indexes, constraints, owned sequences, ...
        before = len(chosen)
        for e in entries:
            if e.dump_id in chosen or e.desc not in PARTS_OF_A_TABLE or not chosen & set(e.deps):
                continue
            if e.desc == "FK CONSTRAINT":
                continue  # decided below: both ends must be restored
            chosen.add(e.dump_id)
        changed = len(chosen) != before
    for e in entries:  # a foreign key joins two tables: only when both are restored
        if e.desc != "FK CONSTRAINT" or not (relations & set(e.deps) or e.dump_id in chosen):
            continue
        joined = {d for d in e.deps if d in by_id and by_id[d].desc == "TABLE"}
        if joined <= relations:
            chosen.add(e.dump_id)
            continue
        chosen.discard(e.dump_id)
        if any(e.rest.startswith(f"{t.schema} {t.name} ") for t in tables):  # a restored table's own key
            left_out.append(f"FK CONSTRAINT {e.rest.rsplit(' ', 1)[0]}: it references a table not restored")
    chosen |= _prerequisites(chosen, by_id)
    chosen |= {e.dump_id for e in entries if e.desc in SETTINGS}
    return ArchivePlan(
        entries=[e for e in entries if e.dump_id in chosen],
        tables=sorted(tables),
        relations=sorted(relations),
        left_out=left_out,
    )


def _prerequisites(chosen: set[int], by_id: dict[int, TocEntry]) -> set[int]:
    """What the chosen entries need to be created (schemas, types, functions, referenced definitions),
    transitively: definitions only, never another table's data."""
    needed: set[int] = set()
    todo = [dep for i in chosen for dep in by_id[i].deps]
    while todo:
        dep = todo.pop()
        entry = by_id.get(dep)
        if entry is None or dep in needed or dep in chosen or entry.desc in NOT_PREREQUISITES:
            continue
        needed.add(dep)
        todo.extend(entry.deps)
    return needed


_MAX_IDENTIFIER_BYTES = 63


def with_suffix(name: str, suffix: str) -> str:
    """`name` + `suffix`, the name cut (on a character boundary) so the whole fits PostgreSQL's 63 bytes."""
    room = _MAX_IDENTIFIER_BYTES - len(suffix.encode())
    if room < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name in 63 bytes")
    cut = name.encode()[:room].decode(errors="ignore")
    return cut + suffix
