"""pgwarden's one error root and its few meaningful branches, below every layer.

`PgwardenError` is every error pgwarden raises on purpose (catch it to handle them all, as psycopg's `Error`):
the operation failed, exit 1. `BadInput` is input refused before anything changed, exit 2. Storage
(`pgwarden.storage.StorageError`) and Kubernetes (`pgwarden.operator.kube.KubeError`) branch off it where
they are raised; the engine's own (a failed run, a refused plan, a script it will not run) join these."""

from __future__ import annotations

from pgwarden.redact import redact


class PgwardenError(Exception):
    """An operation failed; the message is safe to show (already redacted) and says what to do next."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)


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
