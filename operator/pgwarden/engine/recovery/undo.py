"""Undoing a failed run: by transaction, by down scripts (newest first) or from the pre-migration backup.

Whatever is tried, the result says what came of it; `run_outcome` turns that into the run's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import Outcome, RollbackOutcome, RollbackResult
from pgwarden.engine.migrate import history
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.postgres.pgerror import describe_error


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
            f"migrations {listed} ran outside a transaction and stay applied; "
            "use rollback strategy 'down' or 'restore' to undo such runs"
        ),
    )


def undo_with_down_scripts(
    conn: psycopg.Connection[Any], committed: Sequence[MigrationFile], schema: str, say: Callable[[str], None]
) -> RollbackResult:
    """Run the down scripts of the committed migrations, newest first, forgetting each in the history."""
    undone: list[str] = []
    for file in reversed(committed):
        so_far = ", ".join(undone) or "none"
        if file.down_sql is None:
            return RollbackResult(
                strategy="down",
                outcome=RollbackOutcome.FAILED,
                message=f"migration {file.version} has no down script; undone so far: {so_far}",
            )
        say(f"running the down script of {file.version}")
        try:
            _run_down(conn, file, schema)
        except psycopg.Error as exc:
            reason = describe_error(exc)
            return RollbackResult(
                strategy="down",
                outcome=RollbackOutcome.FAILED,
                message=f"down script of {file.version} failed: {reason}; undone so far: {so_far}",
            )
        undone.append(file.version)
    return RollbackResult(
        strategy="down", outcome=RollbackOutcome.SUCCEEDED, message=f"ran down scripts of {', '.join(undone)}"
    )


def _run_down(conn: psycopg.Connection[Any], file: MigrationFile, schema: str) -> None:
    if file.down_runs_in_transaction:
        with conn.transaction():
            for statement in file.down_statements:
                conn.execute(statement.text)
            history.forget_migration(conn, file.version, schema)
        return
    for statement in file.down_statements:
        conn.execute(statement.text)
    history.forget_migration(conn, file.version, schema)


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
                "again: whether they were committed is unknown; `pgwarden migrate --plan` shows the version"
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
            f"the database could not be reached again to roll back: migrations {listed} were committed "
            "and stay applied; run pgwarden migrate again once it is back"
        ),
    )
