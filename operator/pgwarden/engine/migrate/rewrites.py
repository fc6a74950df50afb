"""Statements that rewrite (or copy) a whole table while they hold ACCESS EXCLUSIVE on it, so every reader and
writer waits for as long as the table takes to write out: the lint warns about them (rule REWRITE_RULE).

squawk names some of these under its own rules; this one is pgwarden's, stated in terms of the lock, and
covers what squawk leaves out (VACUUM FULL, CLUSTER, SET LOGGED/UNLOGGED, SET TABLESPACE). Pure.
"""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

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


def rewrite_reason(node: ast.Node) -> str | None:
    """Why the statement holds ACCESS EXCLUSIVE while it writes the whole table again, or None."""
    full = any(
        isinstance(o, ast.DefElem) and o.defname == "full" for o in getattr(node, "options", None) or ()
    )
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd and full:
        return "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE; pg_repack does it online"
    if isinstance(node, ast.ClusterStmt) and node.relation is not None:
        return "CLUSTER rewrites the table under ACCESS EXCLUSIVE; pg_repack does it online"
    if isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            reason = _command_reason(cmd) if isinstance(cmd, ast.AlterTableCmd) else None
            if reason:
                return f"{reason}, holding ACCESS EXCLUSIVE on the table while it does"
    return None


def _command_reason(cmd: ast.AlterTableCmd) -> str | None:
    subtype = cmd.subtype
    if subtype == AlterTableType.AT_AlterColumnType:
        return f"changing the type of column {cmd.name} rewrites the table (unless the types are binary-coercible)"
    if subtype in (AlterTableType.AT_SetLogged, AlterTableType.AT_SetUnLogged):
        return "SET LOGGED/UNLOGGED rewrites the table"
    if subtype == AlterTableType.AT_SetTableSpace:
        return "SET TABLESPACE copies every block of the table"
    if subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        return _added_column_reason(cmd.def_)
    return None


def _added_column_reason(column: ast.ColumnDef) -> str | None:
    type_name = column.typeName.names[-1].sval if column.typeName and column.typeName.names else ""
    if type_name in _SERIAL:
        return f"adding {type_name} column {column.colname} fills every row from a sequence (a rewrite)"
    for constraint in column.constraints or ():
        if not isinstance(constraint, ast.Constraint):
            continue
        if constraint.contype == ConstrType.CONSTR_IDENTITY:
            return f"adding identity column {column.colname} fills every row from a sequence (a rewrite)"
        if constraint.contype == ConstrType.CONSTR_GENERATED:
            return f"adding stored generated column {column.colname} computes it for every row (a rewrite)"
        if constraint.contype == ConstrType.CONSTR_DEFAULT and _volatile(constraint.raw_expr):
            return f"adding column {column.colname} with a volatile default computes it for every row (a rewrite)"
    return None


def _volatile(expr: ast.Node | None) -> bool:
    if isinstance(expr, ast.TypeCast):
        return _volatile(expr.arg)
    if isinstance(expr, ast.FuncCall) and expr.funcname:
        return expr.funcname[-1].sval in _VOLATILE
    return False
