"""Verification that gates the commit: row loss, expected objects and custom checks, all inside the run's transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from pgwarden.api.reports import CheckResult, RowChange
from pgwarden.api.verify import Check, Expectations


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


def run_check(conn: psycopg.Connection[Any], check: Check) -> CheckResult:
    """Run one custom SQL check (in a savepoint, so a broken query fails the check, not the transaction)."""
    try:
        with conn.transaction():
            rows = conn.execute(check.sql).fetchmany(2)
    except psycopg.Error as exc:
        return CheckResult(
            name=check.name, passed=False, message=f"query failed: {exc.diag.message_primary or exc}"
        )
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
