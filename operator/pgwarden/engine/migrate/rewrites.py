"""Statements that rewrite (or copy) a whole table while they hold ACCESS EXCLUSIVE on it, so every reader and
writer waits for as long as the table takes to write out: the lint warns about them (rule REWRITE_RULE).

squawk names some of these under its own rules; this one is pgwarden's, stated in terms of the lock, and
covers what squawk leaves out (VACUUM FULL, CLUSTER, SET LOGGED/UNLOGGED, SET TABLESPACE). Pure.
"""

from __future__ import annotations

from typing import Any

from pglast.enums import AlterTableType, ConstrType

Node = dict[str, Any]  # a node of pglast's JSON parse tree: its fields
REWRITE_RULE = "rewrites-table-under-access-exclusive"
# Defaults that must be computed row by row (volatile), so adding a column with one rewrites the table.
_VOLATILE = frozenset(
    {
        "random",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v4",
        "uuidv4",
        "uuidv7",
        "clock_timestamp",
    }
)
_SERIAL = frozenset({"serial", "serial4", "serial8", "bigserial", "smallserial", "serial2"})


def rewrite_reason(kind: str, node: Node) -> str | None:
    """Why the statement (of parse-tree type `kind`) holds ACCESS EXCLUSIVE while it writes the whole table
    again, or None."""
    if kind == "VacuumStmt" and node.get("is_vacuumcmd") and _has_option(node.get("options"), "full"):
        return "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE; pg_repack does it online"
    if kind == "ClusterStmt" and node.get("relation") is not None:
        return "CLUSTER rewrites the table under ACCESS EXCLUSIVE; pg_repack does it online"
    if kind == "AlterTableStmt":
        for wrapped in node.get("cmds", ()):
            cmd_kind, cmd = _unwrap(wrapped)
            reason = _command_reason(cmd) if cmd_kind == "AlterTableCmd" else None
            if reason:
                return f"{reason}, holding ACCESS EXCLUSIVE on the table while it does"
    return None


def _unwrap(wrapped: Node) -> tuple[str, Node]:
    ((kind, fields),) = wrapped.items()
    return kind, fields


def _has_option(options: list[Node] | None, name: str) -> bool:
    return any(_unwrap(o)[0] == "DefElem" and _unwrap(o)[1].get("defname") == name for o in options or ())


def _command_reason(cmd: Node) -> str | None:
    subtype = cmd.get("subtype")
    if subtype == AlterTableType.AT_AlterColumnType.name:
        name = cmd.get("name")
        return (
            f"changing the type of column {name} rewrites the table (unless the types are binary-coercible)"
        )
    if subtype in (AlterTableType.AT_SetLogged.name, AlterTableType.AT_SetUnLogged.name):
        return "SET LOGGED/UNLOGGED rewrites the table"
    if subtype == AlterTableType.AT_SetTableSpace.name:
        return "SET TABLESPACE copies every block of the table"
    if subtype == AlterTableType.AT_AddColumn.name and cmd.get("def") is not None:
        def_kind, column = _unwrap(cmd["def"])
        return _added_column_reason(column) if def_kind == "ColumnDef" else None
    return None


def _added_column_reason(column: Node) -> str | None:
    names = (column.get("typeName") or {}).get("names") or []
    type_name = _unwrap(names[-1])[1].get("sval", "") if names else ""
    name = column.get("colname")
    if type_name in _SERIAL:
        return f"adding {type_name} column {name} fills every row from a sequence (a rewrite)"
    for wrapped in column.get("constraints", ()):
        constraint_kind, constraint = _unwrap(wrapped)
        if constraint_kind != "Constraint":
            continue
        contype = constraint.get("contype")
        if contype == ConstrType.CONSTR_IDENTITY.name:
            return f"adding identity column {name} fills every row from a sequence (a rewrite)"
        if contype == ConstrType.CONSTR_GENERATED.name:
            return f"adding stored generated column {name} computes it for every row (a rewrite)"
        if contype == ConstrType.CONSTR_DEFAULT.name and _volatile(constraint.get("raw_expr")):
            return f"adding column {name} with a volatile default computes it for every row (a rewrite)"
    return None


def _volatile(expr: Node | None) -> bool:
    if expr is None:
        return False
    kind, fields = _unwrap(expr)
    if kind == "TypeCast":
        return _volatile(fields.get("arg"))
    if kind == "FuncCall" and fields.get("funcname"):
        return _unwrap(fields["funcname"][-1])[1].get("sval") in _VOLATILE
    return False
