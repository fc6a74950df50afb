"""Errors the engine raises, each saying what the caller (or user) should do next."""

from __future__ import annotations

from pgwarden.redact import redact


class PgwardenError(Exception):
    """An operation failed; the message is safe to show (already redacted)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self)


class BadInput(PgwardenError):
    """The input was refused before anything changed: fix it and run again."""

    exit_code = 2


class ServerError(PgwardenError):
    """A statement failed on the server; `sqlstate` lets callers tell a lock or statement timeout (retried,
    or reported as such) from anything else."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailable(PgwardenError):
    """The database could not be reached or refused the login."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a Pod being stopped, `kill`): unwind like Ctrl-C so the run rolls back and reports.

    A KeyboardInterrupt, because psycopg cancels the running query on the server for exactly that class."""

    def __str__(self) -> str:
        return "pgwarden was stopped by SIGTERM"
