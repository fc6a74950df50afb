"""A file that cannot run in a transaction, run statement by statement.

Each statement commits on its own. One that could run in a transaction commits together with the history's
note that it is done, so it runs exactly once whatever dies when; one that cannot (CREATE INDEX
CONCURRENTLY, VACUUM, ...) is noted as started before it runs and as done after, so a run that dies in
between leaves a history saying which statement may have taken effect, and the next run resumes there. A
CREATE INDEX CONCURRENTLY that fails, or was interrupted, leaves an INVALID index: it is dropped (only the one
that statement made) before the statement runs again, since `IF NOT EXISTS` would keep it as it is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pgerrors

from pgwarden.api.reports import AppliedMigration
from pgwarden.engine.migrate import history, indexes
from pgwarden.engine.migrate.applying import applied_entry, execute, recorded, statement_failure
from pgwarden.engine.migrate.failures import RunFailed
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.migrate.plan import PlannedMigration
from pgwarden.engine.migrate.sqlscript import Statement
from pgwarden.engine.pause_points import pause_point

if TYPE_CHECKING:
    from pgwarden.engine.migrate.run import Run


def apply_outside_transaction(run: Run, step: PlannedMigration) -> AppliedMigration:
    """Run the file's statements from where an earlier run left it; its journal step and history row are
    written before the first one."""
    file, resume = step.file, step.resume
    first, total = (resume.applied if resume else 0), len(file.statements)
    run.phase = f"applying {file.version} ({file.script_name})"
    resuming = f", resuming at statement {first + 1} of {total}" if first else ""
    run.say(f"applying {file.version} {file.description}{resuming}")
    with run.conn.transaction():
        run.journal.step(run.conn, file)
        history.record_started(
            run.conn, **recorded(file), statements_total=total, resumed=resume is not None, schema=run.schema
        )
    started, applied = time.monotonic(), first
    try:
        for index in range(first, total):
            run.phase = f"applying {file.version} ({file.script_name}, statement {index + 1} of {total})"
            interrupted = resume is not None and resume.interrupted and index == first
            _run_statement(run, file, index, interrupted=interrupted)
            applied = index + 1
            pause_point("statement-finished")
    except BaseException as exc:
        _record_failure(run, step, applied, exc, started)
        raise
    elapsed_ms = int((time.monotonic() - started) * 1000)
    run.phase = f"recording {file.version} in the history"
    history.finish_started(run.conn, file.version, execution_ms=elapsed_ms, schema=run.schema)
    return applied_entry(file, duration_ms=elapsed_ms, transactional=False, statements_applied=total)


def _run_statement(run: Run, file: MigrationFile, index: int, *, interrupted: bool) -> None:
    statement = file.statements[index]
    digest = history.statements_digest([s.text for s in file.statements[: index + 1]])
    if statement.transactional:

        def in_one_transaction() -> None:
            with run.conn.transaction():
                execute(run, file, statement)
                history.statement_finished(run.conn, file.version, index + 1, digest, run.schema)

        _retried(run, file, statement, in_one_transaction)
        return
    history.statement_started(run.conn, file.version, index + 1, run.schema)
    pause_point("statement-started")
    _run_on_its_own(run, file, statement, interrupted=interrupted)
    history.statement_finished(run.conn, file.version, index + 1, digest, run.schema)


def _run_on_its_own(run: Run, file: MigrationFile, statement: Statement, *, interrupted: bool) -> None:
    """A statement that commits on its own; an INVALID index it leaves (or that the interrupted statement of a
    dead run left) is dropped, so a retry or a rerun starts clean."""
    conn = run.conn
    built = indexes.validity(conn, statement)
    if built is True and interrupted:
        run.say(f"{file.script_name}: index {statement.concurrent_index} was built by the interrupted run")
        return
    if built is False and not interrupted:
        raise RunFailed(
            f"migration {file.version} failed at {file.script_name}:{statement.line}: index "
            f"{statement.concurrent_index} exists but is INVALID, left by a build pgwarden did not start, and "
            f"CREATE INDEX CONCURRENTLY would keep it (IF NOT EXISTS) or fail on it; drop it with "
            f"{indexes.drop_hint(statement)} and run again",
            migration=file.version,
            statement=statement,
        )
    # For an unnamed index only the INVALID indexes that were not there before are ours to drop.
    existing = set() if statement.concurrent_index else indexes.invalid_left_by(conn, statement)

    def attempt() -> None:
        indexes.drop(conn, indexes.invalid_left_by(conn, statement) - existing)
        execute(run, file, statement)

    try:
        _retried(run, file, statement, attempt)
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            indexes.drop(conn, indexes.invalid_left_by(conn, statement) - existing)
        raise


def _retried(run: Run, file: MigrationFile, statement: Statement, attempt: Callable[[], None]) -> None:
    try:
        run.with_lock_retries(attempt)
    except psycopg.Error as exc:
        if isinstance(exc, pgerrors.LockNotAvailable):
            raise
        raise statement_failure(run, file, statement, exc) from exc


def _record_failure(
    run: Run, step: PlannedMigration, applied: int, exc: BaseException, started: float
) -> None:
    """The history says how far the file got; a file of which nothing took effect is nothing to undo."""
    conn, file = run.conn, step.file
    lost = conn.closed or conn.broken or (isinstance(exc, RunFailed) and exc.connection_lost)
    if applied or lost:
        run.partial = step
    if conn.closed or conn.broken:
        return  # the history row still says which statement was running
    with contextlib.suppress(psycopg.Error):
        history.finish_started(
            conn,
            file.version,
            execution_ms=int((time.monotonic() - started) * 1000),
            error=str(exc) or type(exc).__name__,
            effect_unknown=lost,
            schema=run.schema,
        )
        if not applied and not lost:
            run.journal.forget_step(conn, file.version)
