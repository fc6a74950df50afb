"""Compare two schema snapshots and fingerprint one: pure functions, no database needed.

A difference names the object as PostgreSQL would (`schema.table.column`, quoted where needed) and says
how it differs, A being the first snapshot (the live database, or DATABASE_URL) and B the second.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
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


def diff_snapshots(a: SchemaSnapshot, b: SchemaSnapshot) -> list[Difference]:
    """Every difference between A and B; empty when the schemas are the same.

    Objects that hang off a table present on one side only (its columns, indexes, constraints, triggers)
    are not listed separately: the table's own "only in A/B" says it all.
    """
    tables_a = {(t.schema_, t.name) for t in a.tables}
    tables_b = {(t.schema_, t.name) for t in b.tables}
    shared = tables_a & tables_b
    views_a = {(v.schema_, v.name) for v in a.views}
    views_b = {(v.schema_, v.name) for v in b.views}
    # Indexes may sit on materialized views too.
    shared_relations = shared | (views_a & views_b)

    differences: list[Difference] = []
    differences += _pair("schema", a.schemas, b.schemas, lambda s: (s,), quote_ident, lambda x, y: [])
    differences += _pair(
        "extension",
        a.extensions,
        b.extensions,
        lambda e: (e.name,),
        lambda e: e.name,
        _compare_fields(("version", "schema_")),
    )
    differences += _pair(
        "type",
        a.types,
        b.types,
        lambda t: (t.schema_, t.name),
        lambda t: qualified_name(t.schema_, t.name),
        _compare_fields(("kind", "definition")),
    )
    differences += _pair(
        "table",
        a.tables,
        b.tables,
        lambda t: (t.schema_, t.name),
        lambda t: qualified_name(t.schema_, t.name),
        _compare_table,
    )
    differences += _pair(
        "column",
        _columns(a, shared),
        _columns(b, shared),
        lambda c: (c[0], c[1], c[2].name),
        lambda c: qualified_name(c[0], c[1], c[2].name),
        lambda x, y: _compare_column(x[2], y[2]),
    )
    differences += _pair(
        "index",
        [i for i in a.indexes if (i.schema_, i.table) in shared_relations],
        [i for i in b.indexes if (i.schema_, i.table) in shared_relations],
        lambda i: (i.schema_, i.name),
        lambda i: qualified_name(i.schema_, i.name),
        _compare_fields(("table", "definition", "valid")),
    )
    differences += _pair(
        "constraint",
        [c for c in a.constraints if (c.schema_, c.table) in shared],
        [c for c in b.constraints if (c.schema_, c.table) in shared],
        lambda c: (c.schema_, c.table, c.name),
        lambda c: qualified_name(c.schema_, c.table, c.name),
        _compare_fields(("type", "definition")),
    )
    differences += _pair(
        "view",
        a.views,
        b.views,
        lambda v: (v.schema_, v.name),
        lambda v: qualified_name(v.schema_, v.name),
        _compare_view,
    )
    differences += _pair(
        "function",
        a.functions,
        b.functions,
        lambda f: (f.schema_, f.name, f.arguments),
        lambda f: f"{qualified_name(f.schema_, f.name)}({f.arguments})",
        _compare_function,
    )
    differences += _pair(
        "sequence",
        a.sequences,
        b.sequences,
        lambda s: (s.schema_, s.name),
        lambda s: qualified_name(s.schema_, s.name),
        _compare_fields(("type", "start", "increment", "min_value", "max_value", "cache", "cycle")),
    )
    differences += _pair(
        "trigger",
        [t for t in a.triggers if (t.schema_, t.table) in shared],
        [t for t in b.triggers if (t.schema_, t.table) in shared],
        lambda t: (t.schema_, t.table, t.name),
        lambda t: qualified_name(t.schema_, t.table, t.name),
        _compare_fields(("definition", "enabled")),
    )
    return differences


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
