"""How long a backup waits for table locks other sessions hold: pg_dump's --lock-wait-timeout, the same
bound as lock_timeout on the sessions that count rows and read the schema at the dump's snapshot, and the
message a user gets when the wait runs out (instead of a backup waiting for ever behind an ALTER TABLE).
"""

from __future__ import annotations

import re

from pgwarden.api.durations import EXAMPLES, milliseconds
from pgwarden.engine.postgres.connect import with_settings
from pgwarden.errors import BadInput


def lock_wait_ms(timeout: str) -> int:
    """A lock wait timeout (`30s`, `1m`, `1m30s`; `0s` waits for ever) in milliseconds; BadInput otherwise."""
    try:
        return milliseconds(timeout)
    except ValueError as exc:
        raise BadInput(
            f"lock wait timeout {timeout!r} is not a duration; use e.g. {EXAMPLES} (0s waits for ever)"
        ) from exc


def lock_wait_option(timeout: str) -> list[str]:
    """pg_dump's --lock-wait-timeout (in milliseconds, which every pg_dump version reads), none for 0s."""
    ms = lock_wait_ms(timeout)
    return [f"--lock-wait-timeout={ms}"] if ms else []


def with_lock_timeout(url: str, timeout: str) -> str:
    """The connection string with `lock_timeout` set for its sessions (kept with any options it had), so
    the row counts at the dump's snapshot give up on a held lock as pg_dump does."""
    ms = lock_wait_ms(timeout)
    return with_settings(url, {"lock_timeout": str(ms)}) if ms else url


_LOCKED_TABLE = re.compile(r"LOCK TABLE (.+?) IN ACCESS SHARE MODE")


def lock_wait_failure(stderr: str, timeout: str) -> str | None:
    """What to tell the user when pg_dump gave up waiting for a table lock; None for any other failure."""
    if "LOCK TABLE" not in stderr or "timeout" not in stderr:
        return None
    match = _LOCKED_TABLE.search(stderr)
    tables = match.group(1) if match else "a table"
    if len(tables) > 200:
        tables = tables[:200] + "…"
    return (
        f"pg_dump could not lock {tables} within --lock-wait-timeout {timeout}: another session holds a "
        "conflicting lock (ALTER TABLE, VACUUM FULL, LOCK TABLE, …; pg_locks shows which); nothing was "
        "written. Run the backup again once it is released, or raise --lock-wait-timeout "
        "(lockWaitTimeout in a DatabaseBackup)"
    )


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout fired


def lock_wait_message(exc: BaseException, lock_wait: str, what: str) -> str | None:
    """What to tell the user when `what` gave up waiting for a table lock; None for any other error."""
    if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE and "lock timeout" not in str(exc):
        return None
    return (
        f"{what} waited longer than --lock-wait-timeout {lock_wait} for a table lock another session holds "
        "(or waits for: an ALTER TABLE, VACUUM FULL, LOCK TABLE, …; pg_locks shows which); nothing was "
        "written. Run the backup again once it is released, or raise --lock-wait-timeout (lockWaitTimeout "
        "in a DatabaseBackup)"
    )
