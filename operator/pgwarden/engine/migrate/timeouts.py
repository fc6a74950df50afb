"""The bounds every session of a migration run works under: lock_timeout and statement_timeout, in the one
duration grammar (pgwarden.api.durations), handed to PostgreSQL as milliseconds, never 0 (a run must not wait
for ever)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgwarden.api.durations import milliseconds
from pgwarden.api.policy import MigrationPolicy
from pgwarden.engine.postgres.connect import with_settings
from pgwarden.engine.recovery.locks import spread_delays
from pgwarden.errors import BadInput


def postgres_timeout(setting: str, value: str) -> str:
    """A timeout as PostgreSQL is handed it: milliseconds, from the one duration grammar (pgwarden.api.durations);
    BadInput for text that is not a duration or exceeds what PostgreSQL takes."""
    try:
        ms = milliseconds(value)
    except ValueError as exc:
        raise BadInput(f"{setting} {exc}") from exc
    if ms > POSTGRES_MAX_MS:
        raise BadInput(
            f"{setting} {value!r} is longer than PostgreSQL allows (24 days); give a shorter bound"
        )
    return str(ms)


POSTGRES_MAX_MS = 2_147_483_647  # lock_timeout and statement_timeout are int4 milliseconds


def timeouts(policy: MigrationPolicy) -> dict[str, str]:
    return {
        "lock_timeout": postgres_timeout("lock_timeout", policy.lock_timeout),
        "statement_timeout": postgres_timeout("statement_timeout", policy.statement_timeout),
    }


def ddl_lock_timeout(policy: MigrationPolicy) -> str:
    """The lock_timeout of a statement that takes a lock stronger than ROW EXCLUSIVE, in milliseconds."""
    return postgres_timeout("ddl_lock_timeout", policy.ddl_lock_timeout)


def retry_delays(policy: MigrationPolicy) -> list[float]:
    """The pauses between the attempts of a step that timed out waiting for a lock (jittered, spread over
    lock_retry_within)."""
    try:
        within = milliseconds(policy.lock_retry_within) / 1000
    except ValueError as exc:
        raise BadInput(f"lock_retry_within {exc}") from exc
    return spread_delays(policy.lock_attempts, within)


def set_timeouts(conn: psycopg.Connection[Any], policy: MigrationPolicy) -> None:
    for setting, value in {**timeouts(policy), "ddl_lock_timeout": ddl_lock_timeout(policy)}.items():
        if value == "0":
            raise BadInput(
                f"{setting} 0 would let the run wait for ever; give a bound such as 8h (the default is "
                f"{MigrationPolicy.model_fields[setting].default})"
            )
        if setting == "ddl_lock_timeout":
            continue  # set around each statement that takes a strong lock (engine.migrate.applying)
        try:
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
        except psycopg.errors.InvalidParameterValue as exc:
            raise BadInput(
                f"{setting} {value!r} is not a duration; use e.g. 5s, 10m, 1h30m or 500ms"
            ) from exc


def session_url(url: str, policy: MigrationPolicy) -> str:
    """The URL every other session of the run opens (counts, reconnects), carrying the same timeouts."""
    return with_settings(url, timeouts(policy))
