"""Verification that gates the commit: row loss, expected objects and custom checks, all inside the run's transaction.

A custom check is exactly one read-only SELECT, checked with PostgreSQL's own parser before the run starts,
and run in a read-only savepoint that is always rolled back, so it can neither end the transaction it
verifies nor write through it (not even from inside a function it calls).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
from pglast import ast, parser

from pgwarden.api.reports import CheckResult, RowChange
from pgwarden.api.verify import Check, Expectations, VerifySpec
from pgwarden.engine.postgres.pgerror import describe_error

CHECK_RULE = "a check must be one read-only SELECT returning one value"
# Functions whose effect outlives the savepoint a check runs in (session locks, other sessions, files).
_OUTSIDE_THE_TRANSACTION = ("pg_advisory_", "pg_try_advisory_", "dblink", "lo_", "pg_file_")
_OUTSIDE_THE_TRANSACTION_EXACT = frozenset(
    {
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_promote",
    }
)


def qualify(name: str, default_schema: str = "public") -> str:
    """`orders` -> `public.orders`; already qualified names stay as they are."""
    return name if "." in name else f"{default_schema}.{name}"


def row_changes(before: dict[str, int], after: dict[str, int], allow_loss_in: list[str]) -> list[RowChange]:
    """Every table whose row count changed, appeared or disappeared, marking loss that was allowed."""
    allowed = {qualify(t) for t in allow_loss_in}
    changes = []
    for table in sorted(before.keys() | after.keys()):
        was, now = before.get(table), after.get(table)
        if was == now:
            continue
        lost = was is not None and (now is None or now < was)
        changes.append(
            RowChange(table=table, before=was, after=now, allowed_loss=(table in allowed) if lost else None)
        )
    return changes


def row_loss_check(changes: list[RowChange]) -> CheckResult:
    """One check that fails when any table that existed before lost rows without permission."""
    losses = [c for c in changes if c.allowed_loss is False]
    if not losses:
        return CheckResult(name="no row loss", passed=True)
    described = ", ".join(
        f"{c.table} {c.before} -> {c.after if c.after is not None else 'dropped'}" for c in losses
    )
    return CheckResult(
        name="no row loss",
        passed=False,
        message=f"rows lost in {described}; list the table in allowRowLossIn if this is intended",
    )


def expectation_checks(conn: psycopg.Connection[Any], expect: Expectations) -> list[CheckResult]:
    """Each expected table, column and (valid) index is present."""
    results = []
    for table in expect.tables:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualify(table),)).fetchone()
        results.append(_presence("table", table, bool(row and row[0])))
    for column in expect.columns:
        relation, name = column.rsplit(".", 1) if "." in column else ("", column)
        table = qualify(relation)
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s"
            " AND attnum > 0 AND NOT attisdropped)",
            (table, name),
        ).fetchone()
        results.append(_presence("column", column, bool(row and row[0])))
    for index in expect.indexes:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (qualify(index),)
        ).fetchone()
        if row is not None and not row[0]:
            results.append(
                CheckResult(name=f"index {index}", passed=False, message="index exists but is INVALID")
            )
        else:
            results.append(_presence("index", index, row is not None))
    return results


def _presence(kind: str, name: str, present: bool) -> CheckResult:
    return CheckResult(
        name=f"{kind} {name}",
        passed=present,
        expected="present",
        actual="present" if present else "missing",
        message=None if present else f"expected {kind} {name} does not exist",
    )


def validate_check_sql(sql: str) -> str | None:
    """Why the check's SQL is refused (not exactly one read-only SELECT), or None when it may run."""
    try:
        statements = parser.parse_sql(sql)
    except parser.ParseError as error:
        return f"{CHECK_RULE}; PostgreSQL cannot parse it: {error.args[0] if error.args else error}"
    if not statements:
        return f"{CHECK_RULE}; it is empty (only comments or blanks)"
    if len(statements) > 1:
        return f"{CHECK_RULE}; found {len(statements)} statements (keep only the first, up to its ';')"
    statement = statements[0].stmt
    if isinstance(statement, ast.TransactionStmt):
        return f"{CHECK_RULE}; transaction control (BEGIN, COMMIT, ROLLBACK, ...) would end the run's transaction"
    if not isinstance(statement, ast.SelectStmt):
        return f"{CHECK_RULE}; found {_words(type(statement).__name__)}, which is not a query"
    for node in _nodes(statement):
        reason = _refusal(node)
        if reason:
            return f"{CHECK_RULE}; {reason}"
    return None


def refused_checks(spec: VerifySpec) -> list[str]:
    """One message per check that may not run, naming it; empty when every check is a plain query."""
    refused = []
    for check in spec.checks:
        reason = validate_check_sql(check.sql)
        if reason:
            refused.append(f"check {check.name!r}: {reason}")
    return refused


def _refusal(node: ast.Node) -> str | None:
    if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
        return f"it runs {_words(type(node).__name__)} (a data-modifying WITH query)"
    if isinstance(node, ast.SelectStmt) and node.intoClause is not None:
        return "SELECT INTO creates a table; select the value instead"
    if isinstance(node, ast.SelectStmt) and node.lockingClause:
        return "FOR UPDATE/SHARE locks rows; remove the locking clause"
    if isinstance(node, ast.FuncCall):
        name = str(getattr(node.funcname[-1], "sval", "")).lower() if node.funcname else ""
        if name in _OUTSIDE_THE_TRANSACTION_EXACT or name.startswith(_OUTSIDE_THE_TRANSACTION):
            return f"it calls {name}(), which acts outside the transaction the check verifies"
    return None


def _words(node_name: str) -> str:
    """`VariableSetStmt` -> `VARIABLE SET`: a parse node's name as the command a user wrote."""
    return " ".join(re.findall(r"[A-Z][a-z]*", node_name.removesuffix("Stmt"))).upper()


def _nodes(value: object) -> Iterator[ast.Node]:
    """Every node of a parse tree, depth first."""
    if isinstance(value, ast.Node):
        yield value
        for slot in getattr(type(value), "__slots__", ()):
            yield from _nodes(getattr(value, slot, None))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _nodes(item)


def run_check(conn: psycopg.Connection[Any], check: Check) -> CheckResult:
    """Run one custom SQL check in a read-only savepoint, rolled back afterwards, so that a broken,
    misplaced or writing query fails the check instead of the transaction it verifies."""
    reason = validate_check_sql(check.sql)
    if reason:
        return CheckResult(name=check.name, passed=False, message=f"refused: {reason}")
    try:
        rows = _read_only_rows(conn, check.sql)
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        return CheckResult(
            name=check.name,
            passed=False,
            message=f"the query tried to write ({describe_error(exc)}); {CHECK_RULE}, calling no function that writes",
        )
    except psycopg.Error as exc:
        return CheckResult(name=check.name, passed=False, message=f"query failed: {describe_error(exc)}")
    if len(rows) > 1 or (rows and len(rows[0]) != 1):
        return CheckResult(
            name=check.name,
            passed=False,
            message="the query must return a single value (one row, one column)",
        )
    value = rows[0][0] if rows else None
    if check.at_least is not None:
        expected = f">= {check.at_least}"
        passed = isinstance(value, int | float | Decimal) and value >= check.at_least
    else:
        expected = str(check.equals)
        passed = _equal(value, check.equals)
    return CheckResult(name=check.name, passed=passed, expected=expected, actual=str(value))


def _read_only_rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    """At most two rows of `query`, run read-only inside a savepoint that is then rolled back.

    `SET LOCAL transaction_read_only` inside a savepoint makes the rest of it read-only and cannot be
    turned off there; rolling back to the savepoint restores read-write for the migration. The query goes
    through the extended protocol (`stream`), which runs one statement only, whatever the parser thought.
    """
    rows: list[tuple[Any, ...]] = []
    with conn.transaction():
        conn.execute("SET LOCAL transaction_read_only = on")
        with conn.cursor() as cursor:
            for row in cursor.stream(query):
                if len(rows) < 2:
                    rows.append(tuple(row))
        raise psycopg.Rollback
    return rows


def _equal(value: object, expected: object) -> bool:
    if (
        isinstance(value, int | float | Decimal)
        and isinstance(expected, int | float)
        and not isinstance(expected, bool)
    ):
        return float(value) == float(expected)
    if isinstance(value, bool) or isinstance(expected, bool):
        # `equals: true` and `equals: "true"` (how a CRD without booleans carries it) both match SQL true.
        return str(value).lower() == str(expected).lower()
    return str(value) == str(expected)
