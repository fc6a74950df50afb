"""Rolling a run back: by transaction, by down scripts (newest first) or from the pre-migration backup.

The one way a run is undone, by the run itself when it fails or by the next run after its death: both read
what to undo from the journal (`journal.JournalRun`), never from the migration files. Whatever is tried, the
result says what came of it; `run_outcome` turns that into the run's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import errors as pgerrors

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import BackupInfo, Outcome, RollbackOutcome, RollbackResult
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.engine.recovery import journal
from pgwarden.engine.recovery.journal import JournalRun, Step
from pgwarden.errors import BadInput

Connection = psycopg.Connection[Any]
Say = Callable[[str], None]


class Restorer(Protocol):
    """Puts a database back as a backup holds it (engine.restore.safety_net.BackupSafetyNet)."""

    def backup_gone(self, backup: BackupInfo) -> bool: ...

    def restore(self, backup: BackupInfo, say: Say) -> RollbackResult: ...

    @property
    def interrupted(self) -> bool:
        """Whether the last restore was cut short (a signal, the connection lost) rather than failing."""
        ...


class BackupGone(BadInput):
    """The backup a rollback needs is no longer where the run took it: nothing can be restored (exit 2)."""


@dataclass(frozen=True)
class Undone:
    """What undoing a run came to; `interrupted` when it was cut short and is still to finish."""

    result: RollbackResult
    interrupted: bool = False


def undo_run(
    conn: Connection, run: JournalRun, restorer: Restorer | None, say: Say, *, database: str
) -> Undone:
    """Undo what `run` applied with its recorded strategy. For `restore`, `conn` is closed first (the database
    is replaced); BackupGone when the recorded backup is not there any more."""
    strategy = RollbackStrategy(run.strategy)
    if not run.steps:
        return Undone(nothing_committed(strategy))
    versions = run.versions
    if strategy == RollbackStrategy.DOWN:
        return undo_with_down_scripts(conn, run, say)
    if strategy == RollbackStrategy.RESTORE:
        if restorer is None or run.backup is None:
            return Undone(no_backup())
        if restorer.backup_gone(run.backup.info):
            raise BackupGone(backup_gone_message(run, database))
        conn.close()  # the database is replaced: no session of ours may stay on it
        result = restorer.restore(run.backup.info, say)
        return Undone(result, interrupted=restorer.interrupted)
    return Undone(left_applied(strategy, versions))


def backup_gone_message(run: JournalRun, database: str) -> str:
    """Exactly what to do when a rollback's backup is gone (pure)."""
    assert run.backup is not None
    where = run.backup.info.location
    return (
        f"run {run.id} on {database} (started {run.started_on:%Y-%m-%d %H:%M:%S %Z}) ended before its rollback "
        f"finished; the rollback restores backup {run.backup.info.id} from {where}, which is gone (no manifest "
        f"there). The database holds migrations {', '.join(run.versions)} of that run. Either put the backup "
        f"back at {where} and run `pgwarden recover` again, or accept the database as it is with: "
        f"{journal.abandon_statement(run.schema, run.id)}"
    )


def undo_with_down_scripts(conn: Connection, run: JournalRun, say: Say) -> Undone:
    """Run the recorded down scripts, newest first, forgetting each migration in the history and in the
    journal in the same transaction as its down script (a non-transactional one statement by statement)."""
    undone: list[str] = []
    for step in reversed(run.steps):
        so_far = ", ".join(undone) or "none"
        if step.undo.statements is None:
            return Undone(
                _down_failed(f"migration {step.version} has no down script; undone so far: {so_far}")
            )
        say(f"running the down script of {step.version}")
        try:
            _undo_step(conn, run, step)
        except psycopg.OperationalError as exc:
            reason = describe_error(exc)
            message = f"the connection was lost running the down script of {step.version}: {reason}"
            return Undone(_down_failed(f"{message}; undone so far: {so_far}"), interrupted=True)
        except psycopg.Error as exc:
            reason = describe_error(exc)
            return Undone(
                _down_failed(f"down script of {step.version} failed: {reason}; undone so far: {so_far}")
            )
        undone.append(step.version)
    if run.forget_state:
        conn.execute(run.forget_state)
    return Undone(
        RollbackResult(
            strategy="down",
            outcome=RollbackOutcome.SUCCEEDED,
            message=f"ran down scripts of {', '.join(undone)}",
        )
    )


def _undo_step(conn: Connection, run: JournalRun, step: Step) -> None:
    statements = step.undo.statements or ()
    if step.undo.transactional:
        with conn.transaction():
            for statement in statements:
                conn.execute(statement.sql)
            conn.execute(step.undo.forget)
            journal.drop_step(conn, run.schema, run.id, step.position)
        pause_point("step-undone")
        return
    for index in range(step.undone, len(statements)):
        statement = statements[index]
        pause_point("undo-statement")
        try:
            conn.execute(statement.sql)
        except (pgerrors.UndefinedObject, pgerrors.UndefinedTable):
            # Resumed after a death: what this DROP drops went with the statement that died after it ran.
            if not (index == step.undone and step.undone > 0 and statement.kind.startswith("DROP")):
                raise
        journal.record_undone(conn, run.schema, run.id, step.position, index + 1)
    with conn.transaction():
        conn.execute(step.undo.forget)
        journal.drop_step(conn, run.schema, run.id, step.position)


def _down_failed(message: str) -> RollbackResult:
    return RollbackResult(strategy="down", outcome=RollbackOutcome.FAILED, message=message)


def nothing_committed(strategy: RollbackStrategy) -> RollbackResult:
    """The failed transaction was rolled back and nothing of the run had been committed before it."""
    return RollbackResult(
        strategy=str(strategy),
        outcome=RollbackOutcome.NOT_NEEDED
        if strategy == RollbackStrategy.NONE
        else RollbackOutcome.SUCCEEDED,
        message="the transaction was rolled back; nothing of this run was committed",
    )


def left_applied(strategy: RollbackStrategy, versions: Sequence[str]) -> RollbackResult:
    """Migrations committed outside a transaction stay applied under the `transaction` and `none` strategies."""
    listed = ", ".join(versions)
    if strategy == RollbackStrategy.NONE:
        return RollbackResult(
            strategy=str(strategy),
            outcome=RollbackOutcome.NOT_NEEDED,
            message=f"rollback strategy none: migrations {listed} stay applied",
        )
    return RollbackResult(
        strategy=str(strategy),
        outcome=RollbackOutcome.FAILED,
        message=(
            f"migrations {listed} were committed before the failure and stay applied; "
            "use rollback strategy 'down' or 'restore' to undo such runs"
        ),
    )


def run_outcome(anything_committed: bool, result: RollbackResult) -> Outcome:
    """RolledBack when the database is as it was before the run; Failed when it may differ."""
    if result.outcome == RollbackOutcome.FAILED:
        return Outcome.FAILED
    if anything_committed and result.outcome != RollbackOutcome.SUCCEEDED:
        return Outcome.FAILED
    return Outcome.ROLLED_BACK


def nothing_started(strategy: RollbackStrategy) -> RollbackResult:
    """The run ended before it changed anything (no lock, no connection, interrupted while waiting)."""
    return RollbackResult(
        strategy=str(strategy),
        outcome=RollbackOutcome.NOT_NEEDED,
        message="the run ended before it changed anything",
    )


def no_backup() -> RollbackResult:
    return RollbackResult(
        strategy="restore",
        outcome=RollbackOutcome.FAILED,
        message="no pre-migration backup was taken; pass --backup-to with --rollback restore",
    )


def unreachable(
    strategy: RollbackStrategy, committed: Sequence[str], in_doubt: Sequence[str]
) -> RollbackResult:
    """The database could not be reached again after the failure: say what is certain and what is not."""
    if in_doubt:
        listed = ", ".join(in_doubt)
        return RollbackResult(
            strategy=str(strategy),
            outcome=RollbackOutcome.FAILED,
            message=(
                f"the connection was lost while committing {listed} and the database could not be reached "
                "again: whether they were committed is unknown; the run's journal says it: the next `pgwarden "
                "migrate` continues the run, `pgwarden recover` undoes it with its rollback strategy"
            ),
        )
    if not committed:
        return RollbackResult(
            strategy=str(strategy),
            outcome=RollbackOutcome.SUCCEEDED,
            message=(
                "the database could not be reached again, but nothing of this run was committed: "
                "the server discards an uncommitted transaction with its session"
            ),
        )
    listed = ", ".join(committed)
    return RollbackResult(
        strategy=str(strategy),
        outcome=RollbackOutcome.FAILED,
        message=(
            f"the database could not be reached again to roll back: migrations {listed} were committed and "
            "the run's journal records them: the next `pgwarden migrate` continues the run, `pgwarden recover` "
            "undoes it with its rollback strategy"
        ),
    )
