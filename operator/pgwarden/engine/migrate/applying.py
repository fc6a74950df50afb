"""Applying one migration inside the open transaction of its group, statement by statement, telling the
run's observers (lock sampling, progress) when each statement starts and ends."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypedDict

import psycopg
from psycopg import errors as pgerrors

from pgwarden.api.reports import AppliedMigration, StatementCount
from pgwarden.engine.migrate import history
from pgwarden.engine.migrate.failures import RunFailed, as_run_failure
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.migrate.plan import PlannedMigration
from pgwarden.engine.migrate.sqlscript import Statement
from pgwarden.engine.migrate.statements import RunningStatement
from pgwarden.engine.postgres.pgerror import describe_error

if TYPE_CHECKING:
    from pgwarden.engine.migrate.run import Run


class Recorded(TypedDict):
    version: str
    description: str
    script: str
    checksum: str


def recorded(file: MigrationFile) -> Recorded:
    """What every history row says of the file it is about."""
    return Recorded(
        version=file.version, description=file.description, script=file.script_name, checksum=file.checksum
    )


def applied_entry(
    file: MigrationFile, *, duration_ms: int, transactional: bool, statements_applied: int
) -> AppliedMigration:
    """The report's entry for the file, of whose statements `statements_applied` ran."""
    return AppliedMigration(
        version=file.version,
        description=file.description,
        checksum=file.checksum,
        duration_ms=duration_ms,
        transactional=transactional,
        statements=StatementCount(applied=statements_applied, total=len(file.statements)),
    )


def apply_in_transaction(run: Run, step: PlannedMigration) -> AppliedMigration:
    """Run every statement of the migration, then record it in the history and the journal (same transaction)."""
    file = step.file
    run.phase = f"applying {file.version} ({file.script_name})"
    run.say(f"applying {file.version} {file.description}")
    started = time.monotonic()
    for statement in file.statements:
        try:
            execute(run, file, statement)
        except pgerrors.LockNotAvailable:
            raise  # the whole group is retried with backoff
        except psycopg.Error as exc:
            raise statement_failure(run, file, statement, exc) from exc
    elapsed_ms = int((time.monotonic() - started) * 1000)
    run.phase = f"recording {file.version} in the history"
    history.record_migration(run.conn, **recorded(file), execution_ms=elapsed_ms, schema=run.schema)
    run.journal.step(run.conn, file)
    return applied_entry(
        file, duration_ms=elapsed_ms, transactional=True, statements_applied=len(file.statements)
    )


def execute(run: Run, file: MigrationFile, statement: Statement) -> None:
    """Run one statement of a migration, telling the run's observers when it starts and ends."""
    observers = run.options.observers
    if not observers:
        run.conn.execute(statement.text)
        return
    running = RunningStatement(
        version=file.version,
        script=file.script_name,
        line=statement.line,
        text=statement.text,
        pid=run.conn.info.backend_pid,
    )
    for observer in observers:
        observer.started(running)
    try:
        run.conn.execute(statement.text)
    finally:
        for observer in observers:
            observer.finished(running)


def statement_failure(run: Run, file: MigrationFile, statement: Statement, exc: psycopg.Error) -> RunFailed:
    """A failed statement as the run reports it: where, and the server's words without values."""
    where = f"{file.script_name}:{statement.line}"
    cause = as_run_failure(
        exc,
        f"migration {file.version} failed at {where}",
        lock_timeout=run.options.policy.lock_timeout,
        attempts=run.options.lock_attempts,
    )
    message = str(cause)
    if not cause.connection_lost and not isinstance(exc, pgerrors.QueryCanceled):
        message = f"migration {file.version} failed at {where}: {describe_error(exc)}"
    return RunFailed(
        message, migration=file.version, statement=statement, connection_lost=cause.connection_lost
    )
