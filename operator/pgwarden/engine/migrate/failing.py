"""A run that failed: reach the database again, settle a COMMIT whose answer was lost, and undo what the run
applied with its rollback strategy, reading what to undo from the run's journal (engine.recovery.undo, the
same code that finishes a dead run's rollback). The journal says `rolling back` while the undo runs and
`finished` once it ended, so a run killed during its own rollback leaves the rest to the next run."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import psycopg

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import RollbackOutcome, RollbackResult
from pgwarden.engine.migrate import history
from pgwarden.engine.migrate.failures import RunFailed
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.connect import connect, database_name
from pgwarden.engine.recovery import journal, undo
from pgwarden.engine.recovery.locks import lock_key
from pgwarden.errors import PgwardenError

if TYPE_CHECKING:
    from pgwarden.engine.migrate.run import Run

log = logging.getLogger(__name__)
RECONNECT_ATTEMPTS = 3
UNDOES = (RollbackStrategy.DOWN, RollbackStrategy.RESTORE)


def fail(run: Run, failure: RunFailed) -> None:
    """Undo the failed run as its strategy says and put the outcome in its report."""
    run.say(f"failed: {failure}")
    run.report.error = failure.to_error()
    if not reconnect_if_lost(run):
        result = undo.unreachable(
            run.strategy, [s.file.version for s in run.committed], [s.file.version for s in run.in_doubt]
        )
    else:
        settle_in_doubt(run)
        try:
            result = _undo(run, failure)
        except KeyboardInterrupt as exc:  # SIGTERM arriving during the rollback itself
            result = RollbackResult(
                strategy=str(run.strategy),
                outcome=RollbackOutcome.FAILED,
                message=f"the rollback was interrupted ({exc or 'Ctrl-C'}); the run's journal records it, so the "
                "next pgwarden command on this database (or `pgwarden recover`) finishes it",
            )
            reconnect_if_lost(run)
    result.version_after = known_version(run)
    run.report.rollback = result
    run.report.outcome = undo.run_outcome(run.anything_committed, result)


def _undo(run: Run, failure: RunFailed) -> RollbackResult:
    run.phase = f"rolling back ({run.strategy})"
    conn = run.conn
    if not run.journal.opened or not run.anything_committed:
        if run.journal.opened:
            run.journal.mark(conn, journal.FINISHED, outcome="RolledBack", message=str(failure))
        return undo.nothing_committed(run.strategy)
    recorded = run.journal.read(conn)
    if recorded is None:
        return RollbackResult(
            strategy=str(run.strategy),
            outcome=RollbackOutcome.FAILED,
            message=f"the run's journal has no row for run {run.journal.run_id}; nothing was undone",
        )
    if run.strategy in UNDOES:
        run.journal.mark(conn, journal.ROLLING_BACK, message=str(failure))
        pause_point("rolling-back")
    restorer = run.restorer or run.options.safety_net
    try:
        undone = undo.undo_run(conn, recorded, restorer, run.say, database=database_name(run.url))
    except undo.BackupGone as exc:
        return RollbackResult(strategy="restore", outcome=RollbackOutcome.FAILED, message=exc.message)
    reconnect_if_lost(run)  # a restore closed our session: the database was replaced
    if not undone.interrupted and not (run.conn.closed or run.conn.broken):
        with contextlib.suppress(psycopg.Error):  # after a swap the row is in the kept database, not this one
            outcome = undo.run_outcome(True, undone.result)
            run.journal.mark(run.conn, journal.FINISHED, outcome=str(outcome), message=undone.result.message)
    return undone.result


def reconnect_if_lost(run: Run) -> bool:
    """A usable connection for the rollback and the report: the run's own, or a new one."""
    if not (run.conn.closed or run.conn.broken):
        return True
    for attempt in range(RECONNECT_ATTEMPTS):
        try:
            conn = connect(run.url, autocommit=True, connect_timeout=5)
        except PgwardenError as exc:
            log.info("reconnecting failed (attempt %d): %s", attempt + 1, exc)
            time.sleep(1.0)
            continue
        run.adopt(conn)
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(run.schema),))
        return True
    return False


def settle_in_doubt(run: Run) -> None:
    """Whether a COMMIT whose answer was lost happened, read back from the history it wrote."""
    if not run.in_doubt:
        return
    try:
        recorded = {row.version for row in history.read_history(run.conn, run.schema) if row.success}
    except psycopg.Error:
        return
    if all(step.file.version in recorded for step in run.in_doubt):
        run.committed.extend(run.in_doubt)
        run.journal.opened = True
    run.in_doubt = []


def known_version(run: Run) -> str | None:
    """The version the database is at: read back when possible, else what the run knows it committed."""
    if not (run.conn.closed or run.conn.broken):
        try:
            return history.current_version(history.read_history(run.conn, run.schema))
        except psycopg.Error:
            pass
    if run.in_doubt:
        return None  # unknown: the report says so
    if run.committed:
        return run.committed[-1].file.version
    return run.plan.current_version
