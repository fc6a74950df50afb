"""Compare two schema snapshots and fingerprint one: pure functions, no database needed.

A difference names the object as PostgreSQL would (`schema.table.column`, quoted where needed) and says
how it differs, A being the first snapshot (the live database, or DATABASE_URL) and B the second.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pglast import keywords

from pgwarden.api.reports import Difference
from pgwarden.api.schema import Column, Function, SchemaSnapshot, Table, View

_SAFE_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
_QUOTED_KEYWORDS = keywords.RESERVED_KEYWORDS | keywords.COL_NAME_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS

T = TypeVar("T")


def quote_ident(name: str) -> str:
    """The identifier as PostgreSQL's quote_ident prints it: bare when that reads back the same."""
    if _SAFE_IDENT.fullmatch(name) and name not in _QUOTED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified_name(*parts: str) -> str:
    """`schema.table[.column]`, each part quoted only where PostgreSQL would need it."""
    return ".".join(quote_ident(part) for part in parts)


# ---- storage and fingerprint ------------------------------------------------------------------------


def snapshot_to_json(snapshot: SchemaSnapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (camelCase), e.g. for a jsonb column of the history table."""
    return snapshot.model_dump(mode="json", by_alias=True)


def snapshot_from_json(data: Mapping[str, Any] | str) -> SchemaSnapshot:
    """A snapshot back from what `snapshot_to_json` gave (or its JSON text)."""
    if isinstance(data, str):
        return SchemaSnapshot.model_validate_json(data)
    return SchemaSnapshot.model_validate(dict(data))


def _canonical(value: Any) -> Any:
    """Lists of objects sorted by their own canonical text, except column lists, whose order is schema."""
    if isinstance(value, dict):
        return {key: value[key] if key == "columns" else _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def fingerprint(snapshot: SchemaSnapshot) -> str:
    """SHA-256 (hex) of the snapshot's canonical JSON: equal for equal schemas, whatever the catalog order."""
    text = json.dumps(_canonical(snapshot_to_json(snapshot)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---- differences --------------------------------------------------------------------------------------


def _changed(what: str, a: object, b: object) -> str:
    def show(value: object) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    return f"{what} {show(a)} -> {show(b)}"


def _pair(
    kind: str,
    a: Iterable[T],
    b: Iterable[T],
    key: Callable[[T], tuple[str, ...]],
    name: Callable[[T], str],
    compare: Callable[[T, T], list[str]],
) -> list[Difference]:
    """Differences between two lists of one kind of object, matched by key."""
    in_a = {key(item): item for item in a}
    in_b = {key(item): item for item in b}
    found: list[Difference] = []
    for k in sorted(in_a.keys() | in_b.keys()):
        left, right = in_a.get(k), in_b.get(k)
        if right is None:
            found.append(Difference(kind=kind, object=name(left), detail="only in A"))  # type: ignore[arg-type]
        elif left is None:
            found.append(Difference(kind=kind, object=name(right), detail="only in B"))
        else:
            found.extend(Difference(kind=kind, object=name(left), detail=d) for d in compare(left, right))
    return found


def _compare_fields(fields: Iterable[str]) -> Callable[[Any, Any], list[str]]:
    def compare(a: Any, b: Any) -> list[str]:
        return [
            _changed(field.rstrip("_").replace("_", " "), getattr(a, field), getattr(b, field))
            for field in fields
            if getattr(a, field) != getattr(b, field)
        ]

    return compare


def _compare_column(a: Column, b: Column) -> list[str]:
    details = []
    if a.type != b.type:
        details.append(_changed("type", a.type, b.type))
    if a.nullable != b.nullable:
        details.append("nullable -> not null" if a.nullable else "not null -> nullable")
    details.extend(_compare_fields(("default", "identity", "generated"))(a, b))
    return details


def _compare_table(a: Table, b: Table) -> list[str]:
    details = _compare_fields(("kind", "partition_key", "partition_of", "partition_bound"))(a, b)
    names_b = {c.name for c in b.columns}
    names_a = {c.name for c in a.columns}
    order_a = [c.name for c in a.columns if c.name in names_b]
    order_b = [c.name for c in b.columns if c.name in names_a]
    if order_a != order_b:
        details.append(f"column order {', '.join(order_a)} -> {', '.join(order_b)}")
    return details


def _columns(snapshot: SchemaSnapshot, shared: set[tuple[str, str]]) -> list[tuple[str, str, Column]]:
    return [
        (table.schema_, table.name, column)
        for table in snapshot.tables
        if (table.schema_, table.name) in shared
        for column in table.columns
    ]


@dataclass(frozen=True)
class _Shared:
    """The tables (and relations: tables and views, which indexes sit on) both snapshots have."""

    tables: set[tuple[str, str]]
    relations: set[tuple[str, str]]

    @classmethod
    def of(cls, a: SchemaSnapshot, b: SchemaSnapshot) -> _Shared:
        tables = {(t.schema_, t.name) for t in a.tables} & {(t.schema_, t.name) for t in b.tables}
        views = {(v.schema_, v.name) for v in a.views} & {(v.schema_, v.name) for v in b.views}
        return cls(tables, tables | views)


def _schema_named(item: Any) -> tuple[str, ...]:
    return (item.schema_, item.name)


def _schema_name(item: Any) -> str:
    return qualified_name(item.schema_, item.name)


def _on_table(item: Any) -> tuple[str, ...]:
    return (item.schema_, item.table, item.name)


def _on_table_name(item: Any) -> str:
    return qualified_name(item.schema_, item.table, item.name)


@dataclass(frozen=True)
class _ObjectKind:
    """One kind of schema object: which of a snapshot's objects to compare, how they are matched and
    named, and how two of them differ."""

    kind: str
    items: Callable[[SchemaSnapshot, _Shared], Iterable[Any]]
    compare: Callable[[Any, Any], list[str]]
    key: Callable[[Any], tuple[str, ...]] = _schema_named
    name: Callable[[Any], str] = _schema_name


def _compare_view(a: View, b: View) -> list[str]:
    if a.materialized != b.materialized:
        kinds = {True: "materialized view", False: "view"}
        return [f"kind {kinds[a.materialized]} -> {kinds[b.materialized]}"]
    return ["definition differs"] if a.definition != b.definition else []


def _compare_function(a: Function, b: Function) -> list[str]:
    details = _compare_fields(("kind", "returns", "language"))(a, b)
    if a.definition_sha256 != b.definition_sha256:
        details.append("definition differs")
    return details


# Objects that hang off a table present on one side only (its columns, indexes, constraints, triggers) are
# not listed separately: the table's own "only in A/B" says it all.
_OBJECT_KINDS = (
    _ObjectKind("schema", lambda s, _: s.schemas, lambda x, y: [], key=lambda s: (s,), name=quote_ident),
    _ObjectKind(
        "extension",
        lambda s, _: s.extensions,
        _compare_fields(("version", "schema_")),
        key=lambda e: (e.name,),
        name=lambda e: str(e.name),
    ),
    _ObjectKind("type", lambda s, _: s.types, _compare_fields(("kind", "definition"))),
    _ObjectKind("table", lambda s, _: s.tables, _compare_table),
    _ObjectKind(
        "column",
        lambda s, shared: _columns(s, shared.tables),
        lambda x, y: _compare_column(x[2], y[2]),
        key=lambda c: (c[0], c[1], c[2].name),
        name=lambda c: qualified_name(c[0], c[1], c[2].name),
    ),
    _ObjectKind(
        "index",
        lambda s, shared: [i for i in s.indexes if (i.schema_, i.table) in shared.relations],
        _compare_fields(("table", "definition", "valid")),
    ),
    _ObjectKind(
        "constraint",
        lambda s, shared: [c for c in s.constraints if (c.schema_, c.table) in shared.tables],
        _compare_fields(("type", "definition")),
        key=_on_table,
        name=_on_table_name,
    ),
    _ObjectKind("view", lambda s, _: s.views, _compare_view),
    _ObjectKind(
        "function",
        lambda s, _: s.functions,
        _compare_function,
        key=lambda f: (f.schema_, f.name, f.arguments),
        name=lambda f: f"{qualified_name(f.schema_, f.name)}({f.arguments})",
    ),
    _ObjectKind(
        "sequence",
        lambda s, _: s.sequences,
        _compare_fields(("type", "start", "increment", "min_value", "max_value", "cache", "cycle")),
    ),
    _ObjectKind(
        "trigger",
        lambda s, shared: [t for t in s.triggers if (t.schema_, t.table) in shared.tables],
        _compare_fields(("definition", "enabled")),
        key=_on_table,
        name=_on_table_name,
    ),
)


def diff_snapshots(a: SchemaSnapshot, b: SchemaSnapshot) -> list[Difference]:
    """Every difference between A and B, kind by kind; empty when the schemas are the same."""
    shared = _Shared.of(a, b)
    return [
        difference
        for kind in _OBJECT_KINDS
        for difference in _pair(
            kind.kind, kind.items(a, shared), kind.items(b, shared), kind.key, kind.name, kind.compare
        )
    ]
