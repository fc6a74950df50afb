"""The locks a run's statements take, sampled from pg_locks by a second session at a short interval.

The sampling is I/O; folding the samples into one record per (session, relation, mode) with how long each
was seen held and awaited, and which statement first took it, is pure (`LockFold`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import psycopg

from pgwarden.api.reports import LockTaken
from pgwarden.engine.migrate.statements import RunningStatement
from pgwarden.engine.postgres.connect import connect
from pgwarden.errors import PgwardenError
from pgwarden.threads import start_helper

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 0.05
# Modes that conflict with ROW EXCLUSIVE, the lock INSERT/UPDATE/DELETE take: holding one stops writers.
BLOCKS_WRITES = frozenset({"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"})

# Relation locks of other sessions on the tables of this database, system catalogs left out (taken and let go
# by every statement). A relation the uncommitted run created (a new table, a new index) is invisible here and
# to everyone else, so nobody can wait for it: left out too.
_SAMPLE = """
SELECT l.pid, c.oid::regclass::text, l.mode, l.granted
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
  AND c.relnamespace <> 'pg_catalog'::regnamespace AND c.relkind IN ('r', 'p', 'm')
"""


@dataclass
class _Seen:
    statement: RunningStatement | None
    first: float
    last: float
    first_granted: float | None = None
    last_granted: float | None = None


class LockFold:
    """Samples folded as they come: one record per (pid, relation, mode), bounded by what the run locks."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str, str], _Seen] = {}

    def add(
        self, at: float, rows: list[tuple[int, str, str, bool]], current: RunningStatement | None
    ) -> None:
        """One sample taken at `at`: the rows of pg_locks, and the statement running then."""
        for pid, relation, mode, granted in rows:
            # Other sessions of the run (counts, checks) take their locks outside any statement of a migration.
            by = current if current is not None and current.pid == pid else None
            seen = self._seen.setdefault((pid, relation, mode), _Seen(by, at, at))
            seen.last = at
            if granted:
                seen.first_granted = seen.first_granted if seen.first_granted is not None else at
                seen.last_granted = at

    def locks(self) -> list[LockTaken]:
        """What was seen, longest hold first (pure)."""
        taken = []
        for (_pid, relation, mode), seen in self._seen.items():
            held = (
                seen.last_granted - seen.first_granted
                if seen.first_granted is not None and seen.last_granted is not None
                else 0.0
            )
            waited = (seen.first_granted if seen.first_granted is not None else seen.last) - seen.first
            taken.append(
                LockTaken(
                    relation=relation,
                    mode=mode,
                    migration=seen.statement.version if seen.statement else None,
                    statement=seen.statement.where if seen.statement else None,
                    held_seconds=round(held, 3),
                    waited_seconds=round(waited, 3),
                    blocks_writes=mode in BLOCKS_WRITES,
                )
            )
        return sorted(taken, key=lambda lock: (-lock.held_seconds, lock.relation, lock.mode))


def over_limit(locks: list[LockTaken], limit_seconds: float) -> list[LockTaken]:
    """The locks that stop writers and were held longer than the limit (pure)."""
    return [lock for lock in locks if lock.blocks_writes and lock.held_seconds > limit_seconds]


class LockSampler:
    """A statement observer that samples pg_locks of the database at `url` from its own session while a run
    goes on (`with LockSampler(url) as sampler: ...; sampler.locks()`)."""

    def __init__(self, url: str, interval: float = DEFAULT_INTERVAL) -> None:
        self.url = url
        self.interval = interval
        self.fold = LockFold()
        self._current: RunningStatement | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="pgwarden-lock-sampler", daemon=True)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._busy = threading.Lock()  # one query at a time on the sampling session
        self._broken = False
        self.lost: str | None = None
        """Why sampling stopped before the run ended (its session gone): the locks seen are then partial."""

    def __enter__(self) -> LockSampler:
        self._conn = connect(self.url, autocommit=True, connect_timeout=5)
        start_helper(self._thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    def started(self, statement: RunningStatement) -> None:
        # Not while a sample is under way: what it sees was taken before this statement, and must not be
        # put down to the statement before it (or to none).
        with self._busy:
            self._current = statement

    def finished(self, statement: RunningStatement) -> None:
        # A statement faster than the interval is never seen running: a sample right after it ends still
        # finds what it took (held until COMMIT) and names it.
        self._sample_once(statement)
        with self._busy:  # what the run locks between statements (counts, checks) is no statement's
            self._current = None

    def locks(self) -> list[LockTaken]:
        return self.fold.locks()

    def _sample(self) -> None:
        while not self._stop.is_set() and not self._broken:
            self._sample_once(None)
            self._stop.wait(self.interval)

    def _sample_once(self, ended: RunningStatement | None) -> None:
        """One sample, put down to the statement that just `ended`, else to the one running."""
        if self._conn is None:
            return
        with self._busy:
            current = ended or self._current
            if self._broken:
                return
            try:
                rows = self._conn.execute(_SAMPLE).fetchall()
            except (psycopg.Error, PgwardenError) as exc:
                log.debug("lock sampling stopped: %s", exc)
                self._broken = True
                self.lost = str(exc) or type(exc).__name__
                return
            self.fold.add(
                time.monotonic(),
                [(int(p), str(r), str(m), bool(g)) for p, r, m, g in rows],  # type: ignore[call-overload]
                current,
            )
