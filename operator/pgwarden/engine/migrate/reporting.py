"""The report a run ends with: what it applied and kept, the version the database is at, and the tables and
rows it holds afterwards (counted again after a failure and its rollback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from pgwarden.api.reports import AppliedMigration, MigrationReport, Outcome, StatementCount
from pgwarden.api.verify import RowCountMode
from pgwarden.engine.migrate import failing, history, verify
from pgwarden.engine.migrate.applying import applied_entry
from pgwarden.engine.postgres.state import count_tables
from pgwarden.errors import PgwardenError

if TYPE_CHECKING:
    from pgwarden.engine.migrate.run import Run


def finish(run: Run) -> MigrationReport:
    report = run.report
    report.applied = run.applied if report.outcome == Outcome.SUCCEEDED else _kept(run)
    report.verification = run.verification
    report.current_version = (
        report.rollback.version_after if report.rollback is not None else failing.known_version(run)
    )
    applied_versions = {a.version for a in report.applied if a.statements is None or _whole(a.statements)}
    report.pending = [v for v in run.plan.pending if v not in applied_versions]
    if report.outcome != Outcome.SUCCEEDED:
        _count_after_failure(run)
    elif report.rows.after is None:
        report.tables.after = report.tables.before
        report.rows.after = report.rows.before
    return report


def _whole(count: StatementCount) -> bool:
    return count.applied == count.total


def _kept(run: Run) -> list[AppliedMigration]:
    """What the failed run applied and the database still holds: nothing once rolled back."""
    if run.report.outcome == Outcome.ROLLED_BACK:
        return []
    committed = {s.file.version for s in run.committed}
    kept = [a for a in run.applied if a.version in committed]
    if run.partial is not None and run.partial.file.version not in committed:
        kept.append(_partly(run))
    return kept


def _partly(run: Run) -> AppliedMigration:
    """The file applied in part, as far as its history row says."""
    assert run.partial is not None
    file = run.partial.file
    applied = 0
    if not (run.conn.closed or run.conn.broken):
        try:
            rows = [r for r in history.read_history(run.conn, run.schema) if r.version == file.version]
            applied = (rows[-1].statements_applied or 0) if rows else 0
        except psycopg.Error:
            pass
    return applied_entry(file, duration_ms=0, transactional=False, statements_applied=applied)


def _count_after_failure(run: Run) -> None:
    """Count what the database holds after the failure and its rollback (when it can be reached)."""
    report = run.report
    if run.conn.closed or run.conn.broken:
        report.tables.after = report.rows.after = None
        return
    spec = run.options.verify
    try:
        tables = count_tables(run.conn, run.url, mode=spec.row_counts, own_schema=run.schema)
    except (PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
        reason = str(exc) or "interrupted"
        report.warnings.append(f"could not count the tables after the failure: {reason}")
        report.tables.after = report.rows.after = None
        return
    report.tables.after = len(tables)
    if spec.row_counts == RowCountMode.NONE:
        report.rows.after = None
        return
    report.rows.after = sum(tables.values())
    if run.before is not None:  # changes against what the database holds now, not the undone transaction
        report.row_changes = verify.row_changes(run.before.row_counts, tables, spec.allow_row_loss_in)
