"""Announcements: a backup or restore of a database says so for its whole run, and a migration of that
database waits for it before it takes any DDL lock, so DDL never queues behind a dump and freezes readers.

An announcement is an advisory lock in shared mode held by a session of its own in the maintenance database,
keyed by the database's name, like the migrator lock: it survives anything done to the database itself (a
restore that swaps it by rename ends every session on it). The session's application_name says what it is
("pgwarden backup 20261207T…"), so the waiter can name it. A migration takes the same lock exclusively and
keeps it for its run: it waits for every announcement before it, and a backup that starts after it finds the
lock taken (and runs unannounced, as before: waiting for the migration, or skipping, is its own decision).

Who announces: a backup while it reads the database (pg_dump and its counts), a restore for its whole run, on
the database it restores into. A drill and a rehearsal announce nothing: they restore a stored backup into a
scratch database and never lock a table of the source (a rehearsal only reads the source's history to plan),
so a migration of the source has nothing to wait for; a scratch database has no migrations to hold off.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from pgwarden.api.reports import WaitedFor
from pgwarden.engine.postgres.blockers import span
from pgwarden.engine.postgres.connect import APPLICATION_NAME, connect, database_name, with_database
from pgwarden.errors import PgwardenError

log = logging.getLogger(__name__)
MAINTENANCE_DATABASE = "postgres"
TELL_EVERY = 30.0

# The sessions holding the announcement: pg_locks shows a bigint advisory key as classid (its high 32 bits)
# and objid (its low 32 bits), with objsubid 1.
_HOLDERS = """
SELECT a.pid, a.application_name, extract(epoch FROM clock_timestamp() - a.backend_start)::float8
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1
ORDER BY a.backend_start
"""


class StillAnnounced(PgwardenError):
    """A backup or restore of the database was still running when the migration's wait for it ran out."""


@dataclass(frozen=True)
class Announcement:
    """Someone's announced run on the database: what it is, and for how long it has run."""

    what: str
    running_seconds: float

    def describe(self) -> str:
        return f"{self.what}, running {span(self.running_seconds)}"


def announce_key(database: str) -> int:
    """The signed 64-bit advisory-lock key of the announcements on `database` (in the maintenance database)."""
    digest = hashlib.sha256(f"pgwarden:announce:{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_ids(key: int) -> tuple[int, int]:
    """The key as pg_locks shows it: (classid, objid), each an unsigned 32-bit half (pure)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def maintenance_url(url: str) -> str:
    return with_database(url, MAINTENANCE_DATABASE)


@contextmanager
def announced(url: str, what: str) -> Iterator[bool]:
    """Announce `what` ("backup <id>") on the database of `url` for the block; yields whether it could (not when
    the maintenance database cannot be reached, or a migration of the database holds the lock)."""
    database = database_name(url)
    try:
        conn = connect(
            maintenance_url(url),
            autocommit=True,
            connect_timeout=5,
            application_name=f"{APPLICATION_NAME} {what}"[:63],
        )
    except PgwardenError as exc:
        log.info("%s is not announced: %s", what, exc)
        yield False
        return
    with conn:
        row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (announce_key(database),)).fetchone()
        held = bool(row and row[0])
        if not held:
            log.info("a migration of %s is running; %s goes on unannounced", database, what)
        yield held  # the session's end lets the announcement go


def announcements(conn: psycopg.Connection[Any], database: str) -> list[Announcement]:
    """The runs announced on `database`, oldest first (`conn` is on the maintenance database)."""
    classid, objid = lock_ids(announce_key(database))
    rows = conn.execute(_HOLDERS, (classid, objid)).fetchall()
    return [
        Announcement(what=str(name or f"pid {pid}").removeprefix(f"{APPLICATION_NAME} "), running_seconds=age)
        for pid, name, age in rows
    ]


def wait_for_announced(
    conn: psycopg.Connection[Any],
    database: str,
    *,
    bound_seconds: float,
    say: Callable[[str], None],
    poll: float = 0.5,
) -> WaitedFor | None:
    """Take the announcement lock exclusively (held with `conn`'s session), waiting at most `bound_seconds`
    for the runs announced on `database`; says what it waited for (None: nothing), and raises StillAnnounced
    past the bound."""
    key = announce_key(database)
    started, told = time.monotonic(), -TELL_EVERY
    waited: dict[str, Announcement] = {}
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            seconds = round(time.monotonic() - started, 3)
            return WaitedFor(runs=list(waited), seconds=seconds) if waited else None
        running = announcements(conn, database)
        waited.update({a.what: a for a in running})
        now = time.monotonic()
        if running and now - told >= TELL_EVERY:
            say("waiting for " + "; ".join(a.describe() for a in running))
            told = now
        if now - started > bound_seconds:
            still = "; ".join(a.describe() for a in running) or "a backup or restore"
            raise StillAnnounced(
                f"{still} of {database} was still running after waiting {span(bound_seconds)} for it, so the "
                "migration did not start (nothing was changed); raise the backup wait or run it later"
            )
        time.sleep(poll)
