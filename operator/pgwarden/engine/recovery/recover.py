"""`pgwarden recover` and the first thing every other command does: settle what dead runs left on a database.

`recover` waits for the migrator lock and also undoes a dead run that was going forward, with the rollback
strategy and backup it recorded; a command's own preamble (`settle_first`) only settles what no live run
owns and leaves a dead forward run to the next migrate, which continues it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from pgwarden.api.reports import ErrorInfo, Outcome, Recovered, RecoveryReport, RecoveryState
from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.connect import connect, database_name, describe, resolve_url
from pgwarden.engine.recovery.settle import Notes, settle
from pgwarden.errors import BadInput, DatabaseUnavailable, PgwardenError
from pgwarden.redact import register_environment

Say = Callable[[str], None]
SETTLED = (RecoveryState.CLEAN, RecoveryState.RECOVERED)


def recover(
    database_url: str | None,
    *,
    schema: str | None = None,
    wait_seconds: float = 600.0,
    progress: Say | None = None,
) -> RecoveryReport:
    """Settle everything dead runs left on the database, undoing dead runs with their recorded rollback.
    BadInput (exit 2) when a rollback needs a backup that is gone; the message says what to do."""
    say = progress or (lambda _message: None)
    started, clock = datetime.now(UTC), time.monotonic()
    url = resolve_url(database_url)
    register_environment()
    _reachable(url)
    notes = settle(
        url, undo_forward=True, wait_seconds=wait_seconds, say=say, schemas=[schema] if schema else None
    )
    error = None
    if not notes.found and not _exists(url):
        notes.failed = True
        error = ErrorInfo(
            message=f"database {database_name(url)} does not exist, and nothing pgwarden left explains it (no "
            "swap, no restored copy of it on the server)"
        )
    recovered = notes.recovered(always=True)
    assert recovered is not None
    if error is None and recovered.state not in SETTLED:
        error = ErrorInfo(message="; ".join(recovered.done[-2:]) or "not everything could be settled")
    return RecoveryReport(
        outcome=Outcome.SUCCEEDED if recovered.state in SETTLED and error is None else Outcome.FAILED,
        database=describe(url),
        recovered=recovered,
        error=error,
        started_at=started,
        completed_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
    )


def settle_first(database_url: str | None, say: Say) -> Recovered | None:
    """What a backup or restore does first: settle what no live run owns (never waiting for a lock); a dead
    run's rollback that cannot be finished is reported, and the command goes on."""
    try:
        url = resolve_url(database_url)
        register_environment()
        notes = settle(url, undo_forward=False, wait_seconds=None, say=say)
    except BadInput as exc:
        notes = Notes(found=["a dead run's rollback could not be finished"], done=[exc.message], failed=True)
    except PgwardenError as exc:
        notes = Notes(found=["settling what dead runs left failed"], done=[exc.message], failed=True)
    return notes.recovered()


def _reachable(url: str) -> None:
    """DatabaseUnavailable when neither the database nor the maintenance database answers: nothing can be
    settled, and saying Clean would be a lie."""
    try:
        with databases.maintenance(url):
            return
    except DatabaseUnavailable:
        with connect(url, autocommit=True, connect_timeout=10):
            return


def _exists(url: str) -> bool:
    try:
        with databases.maintenance(url) as conn:
            return databases.exists(conn, database_name(url))
    except DatabaseUnavailable:
        return True  # no maintenance database to look from: the settle step said what it could
