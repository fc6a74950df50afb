"""What went wrong in a run, in words a person acts on: every foreseeable failure becomes a `RunFailed`.

A run catches whatever ends it — a failed statement, a lock or statement timeout, a lost connection, a
stopped server, SIGTERM — and turns it into one of these, so the rollback strategy always runs and the
report always says what happened. Only programming errors escape as `unexpected error`.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pgerrors

from pgwarden.api.reports import ErrorInfo
from pgwarden.engine.migrate.sqlscript import Statement
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.engine.recovery.locks import is_lock_timeout
from pgwarden.errors import PgwardenError


class RunFailed(PgwardenError):
    """A statement, a migration or the verification failed; carries where, for the report."""

    def __init__(
        self,
        message: str,
        *,
        migration: str | None = None,
        statement: Statement | None = None,
        connection_lost: bool = False,
    ) -> None:
        super().__init__(message)
        self.migration = migration
        self.statement = statement
        self.connection_lost = connection_lost

    def to_error(self) -> ErrorInfo:
        return ErrorInfo(
            message=str(self),
            migration=self.migration,
            statement=excerpt(self.statement.text) if self.statement else None,
            line=self.statement.line if self.statement else None,
        )


class VerificationFailed(RunFailed):
    """A verification item failed; the run is undone."""


def excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def as_run_failure(exc: BaseException, phase: str, *, lock_timeout: str, attempts: int) -> RunFailed:
    """The failure `exc` (raised while `phase` was under way) as the run reports it."""
    if isinstance(exc, RunFailed):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        reason = str(exc) or "pgwarden was interrupted (Ctrl-C)"
        return RunFailed(f"{reason} while {phase}")
    if is_lock_timeout(exc):
        return RunFailed(
            f"{phase}: gave up after {attempts} attempts, each waiting for a lock another session holds (at "
            f"most lock_timeout {lock_timeout}, or ddl_lock_timeout for a statement taking a lock stronger than "
            "ROW EXCLUSIVE); end that session, or give more --lock-attempts or a longer --lock-retry-within"
        )
    if isinstance(exc, pgerrors.QueryCanceled):
        return RunFailed(
            f"{phase}: {describe_error(exc)} (statement_timeout; raise --statement-timeout if it must run longer)"
        )
    if isinstance(exc, psycopg.OperationalError):  # AdminShutdown (server stopped) is one too
        return RunFailed(
            f"the connection to the database was lost while {phase}: {describe_error(exc)}",
            connection_lost=True,
        )
    if isinstance(exc, psycopg.Error):
        return RunFailed(f"{phase}: {describe_error(exc)}")
    if isinstance(exc, PgwardenError):
        return RunFailed(f"{phase}: {exc.message}")
    raise exc
