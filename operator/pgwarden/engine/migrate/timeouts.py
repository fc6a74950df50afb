"""The bounds every session of a migration run works under: lock_timeout and statement_timeout, written the
Kubernetes way (`10m`, `1h30m`) or PostgreSQL's, never 0 (a run must not wait for ever)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.api.policy import MigrationPolicy
from pgwarden.engine.postgres.connect import with_settings
from pgwarden.errors import BadInput

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_MS = (86_400_000, 3_600_000, 60_000, 1000, 1)


def postgres_timeout(value: str) -> str:
    """A timeout as PostgreSQL reads it: Kubernetes-style `10m`/`1h30m` become milliseconds (PostgreSQL
    would read `m` as an error); PostgreSQL's own forms (`10min`, `500ms`, `0`) pass through."""
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if not text or not match or not any(match.groups()):
        return text
    return f"{sum(int(part or 0) * ms for part, ms in zip(match.groups(), _DURATION_MS, strict=True))}ms"


def timeouts(policy: MigrationPolicy) -> dict[str, str]:
    return {
        "lock_timeout": postgres_timeout(policy.lock_timeout),
        "statement_timeout": postgres_timeout(policy.statement_timeout),
    }


def set_timeouts(conn: psycopg.Connection[Any], policy: MigrationPolicy) -> None:
    for setting, value in timeouts(policy).items():
        if value.strip() in ("0", "0ms", "0s", "0min"):
            raise BadInput(
                f"{setting} 0 would let the run wait for ever; give a bound such as 8h (the default is "
                f"{MigrationPolicy.model_fields[setting].default})"
            )
        try:
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
        except psycopg.errors.InvalidParameterValue:
            raise BadInput(
                f"{setting} {value!r} is not a duration; use e.g. 5s, 10m, 1h30m or 500ms"
            ) from None


def session_url(url: str, policy: MigrationPolicy) -> str:
    """The URL every other session of the run opens (counts, reconnects), carrying the same timeouts."""
    return with_settings(url, timeouts(policy))
