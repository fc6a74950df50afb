"""How long a restore lets pg_restore wait for a lock another session holds.

The archive sets `lock_timeout = 0` itself, so no setting of ours reaches pg_restore's sessions: a session
holding even ACCESS SHARE on a table that `--clean` drops would keep the restore waiting for ever. A
watcher therefore looks at pg_restore's sessions from outside (pg_stat_activity, pg_blocking_pids) and,
once one has waited on a lock longer than the limit, ends them and says who was in the way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import psycopg

from pgwarden.engine.backup.locks import lock_wait_ms
from pgwarden.engine.postgres.connect import connect
from pgwarden.errors import PgwardenError
from pgwarden.threads import start_helper

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# pg_restore's sessions carry PGAPPNAME=pgwarden (pgtools.tool_invocation); 'pg_restore' if it is unset.
_WAITING = """
SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name IN ('pgwarden', 'pg_restore') AND wait_event_type = 'Lock'
"""


@dataclass(frozen=True)
class LockWait:
    """pg_restore gave up on a lock: its waiting session(s) and the sessions that held them up."""

    waiting: tuple[int, ...]
    blockers: tuple[int, ...]


def overdue(
    first_seen: dict[int, float], waiting: dict[int, list[int]], now: float, limit: float
) -> LockWait | None:
    """Which sessions have waited on a lock past `limit` seconds, given when each was first seen waiting
    (updated in place: a session no longer waiting starts afresh); None while none has (pure)."""
    for pid in list(first_seen):
        if pid not in waiting:
            del first_seen[pid]
    for pid in waiting:
        first_seen.setdefault(pid, now)
    late = sorted(pid for pid, since in first_seen.items() if now - since >= limit)
    if not late:
        return None
    blockers = sorted({b for pid in late for b in waiting[pid] if b not in waiting})
    return LockWait(waiting=tuple(late), blockers=tuple(blockers))


def lock_wait_message(found: LockWait, timeout: str, *, single_transaction: bool) -> str:
    """What the user reads when the restore gave up on a lock, and what to do about it."""
    blockers = ", ".join(str(pid) for pid in found.blockers) or "unknown (pg_locks shows them)"
    state = (
        "pg_restore was stopped and its single transaction rolled back: the database is as it was"
        if single_transaction
        else "pg_restore was stopped; it ran without one transaction (parallel or directory format), so the "
        "database may be partly restored: objects --clean dropped may be missing. Restore again"
    )
    return (
        f"pg_restore waited longer than --lock-wait-timeout {timeout} for a lock held by session(s) "
        f"pid {blockers} on the database (pg_stat_activity shows what they run). {state}. End those "
        "sessions, rerun with --terminate-connections, or raise --lock-wait-timeout"
    )


class LockWatch:
    """Watches pg_restore's sessions on `url` from a thread; `found` is set once one waited too long and
    `on_overdue` (which stops pg_restore) has run. A watch that cannot query stops quietly."""

    def __init__(self, url: str, timeout: str, on_overdue: Callable[[], None]) -> None:
        self._url, self._limit = url, lock_wait_ms(timeout) / 1000
        self._on_overdue = on_overdue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restore-lock-watch", daemon=True)
        self.found: LockWait | None = None

    def __enter__(self) -> LockWatch:
        if self._limit > 0:
            start_helper(self._thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            with connect(self._url, autocommit=True) as conn:
                # The target's own settings (a tiny statement_timeout) must not stop the watch.
                conn.execute("SET statement_timeout = '10s'")
                first_seen: dict[int, float] = {}
                while not self._stop.wait(POLL_SECONDS):
                    rows = conn.execute(_WAITING).fetchall()
                    waiting = {
                        cast(int, pid): list(cast(list[int], blockers) or []) for pid, blockers in rows
                    }
                    found = overdue(first_seen, waiting, time.monotonic(), self._limit)
                    if found is not None:
                        self.found = found
                        self._on_overdue()
                        for pid in found.waiting:
                            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                        return
        except (psycopg.Error, PgwardenError) as exc:  # never the restore's failure: it goes on unwatched
            log.debug("restore lock watch stopped: %s", type(exc).__name__)
