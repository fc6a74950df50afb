"""Scratch databases that never outlive their run: created, used, and always dropped, even after a SIGKILL.

Three layers, each covering what the one before cannot:
- the owner drops the database itself when it is done or fails (a `with` block);
- a guardian process, started with it in a session of its own, drops it when the owner dies without doing so
  (SIGKILL, OOM kill): its stdin is a pipe from the owner, which the kernel closes when the owner dies;
- a sweep, run whenever a scratch database is created, drops scratch databases whose owner is gone (a whole
  Pod killed, guardian included). The owner holds a session advisory lock named for its database in the
  maintenance database for as long as the database lives, so the sweep never drops a live one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.connect import with_database
from pgwarden.errors import PgwardenError

log = logging.getLogger(__name__)
Say = Callable[[str], None]
Connection = psycopg.Connection[Any]

# Names of scratch databases, as LIKE patterns: only these are ever swept, and only when no owner holds them.
# Restore drills (engine.restore.drill) are `<database>_pgw_drill_<random>`; a restore rollback's copy before it
# is verified `<database>_pgw_restore_<random>` (engine.restore.swap; once verified it is renamed and no longer
# swept: the next run swaps it in); a `restore --create` works in `<database>_pgw_restoring_<random>`.
REHEARSAL_MARK = "_pgw_rehearsal_"
VERIFY_PREFIX = "pgwarden_verify_"
# Partial restores (engine.restore.partial) work in `<database>_pgw_partial_<random>`.
SWEPT = (
    r"%\_pgw\_rehearsal\_%",
    r"pgwarden\_verify\_%",
    r"%\_pgw\_drill\_%",
    r"%\_pgw\_restore\_%",
    r"%\_pgw\_restoring\_%",
    r"%\_pgw\_partial\_%",
)
RELEASE = "release\n"


class ScratchInUse(PgwardenError):
    """Another live run owns a scratch database of that name (the names carry a random part: retry)."""


def scratch_key(name: str) -> int:
    """The advisory-lock key its owner holds in the maintenance database while scratch database `name` lives."""
    digest = hashlib.sha256(f"pgwarden:scratch:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def scratch_database(url: str, name: str, *, say: Say | None = None) -> Iterator[str]:
    """Create database `name` (empty, from template0) on the server of `url` and yield its URL; it is dropped
    when the block ends, however it ends, and by its guardian if this process dies inside the block."""
    tell = say or (lambda _message: None)
    with databases.maintenance(url) as owner:
        sweep_abandoned(owner, tell)
        if not _try_lock(owner, name):
            raise ScratchInUse(f"scratch database {name} belongs to another live run")
        guardian = Guardian.start(url, name)
        dropped = False
        try:
            owner.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            yield with_database(url, name)
        finally:
            try:
                databases.drop(owner, name)
                dropped = True
            except psycopg.Error as exc:
                # The guardian tries again once this session (and its lock) is gone.
                log.warning("could not drop scratch database %s (its guardian will): %s", name, exc)
            finally:
                guardian.stop(drop=not dropped)
                with contextlib.suppress(psycopg.Error):
                    owner.execute("SELECT pg_advisory_unlock(%s)", [scratch_key(name)])


@contextlib.contextmanager
def guarded(url: str, name: str) -> Iterator[None]:
    """While the block runs, a database `name` that its caller creates and fills is dropped by a guardian
    if this process dies (SIGKILL); when the block ends, however it ends, the caller is in charge again
    (the restore rollback drops it on failure, or swaps it in by rename)."""
    with databases.maintenance(url) as owner:
        if not _try_lock(owner, name):
            raise ScratchInUse(f"scratch database {name} belongs to another live run")
        guardian = Guardian.start(url, name)
        try:
            yield
        finally:
            guardian.stop(drop=False)
            with contextlib.suppress(psycopg.Error):
                owner.execute("SELECT pg_advisory_unlock(%s)", [scratch_key(name)])


def _try_lock(conn: Connection, name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [scratch_key(name)]).fetchone()
    return bool(row and row[0])


def sweep_abandoned(conn: Connection, say: Say) -> list[str]:
    """Drop the scratch databases whose owner is gone (no session holds their lock); the names dropped.
    A database that cannot be dropped (another role's) is left, and said."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE ANY(%s) ORDER BY 1", [list(SWEPT)]
    ).fetchall()
    dropped = []
    for (name,) in rows:
        if not _try_lock(conn, str(name)):
            continue  # a live run's
        try:
            say(f"dropping scratch database {name}, left by a run that was killed")
            databases.drop(conn, str(name))
            dropped.append(str(name))
        except psycopg.Error as exc:
            say(f"could not drop the abandoned scratch database {name}: {exc}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [scratch_key(str(name))])
    return dropped


class Guardian:
    """A process in a session of its own that drops the scratch database when its owner dies first."""

    def __init__(self, process: subprocess.Popen[str] | None) -> None:
        self.process = process

    @classmethod
    def start(cls, url: str, name: str) -> Guardian:
        """Start it; the connection string reaches it on stdin (never on a command line others can read)."""
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "pgwarden.engine.postgres.scratch_guardian"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # not in the owner's process group: a kill of that group spares it
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps({"url": url, "name": name}) + "\n")
            process.stdin.flush()
        except OSError as exc:
            log.warning("no guardian for scratch database %s (a sweep will drop it if we die): %s", name, exc)
            return cls(None)
        return cls(process)

    def stop(self, *, drop: bool) -> None:
        """Let it go: with `drop` it drops the database once our session has let go of it."""
        if self.process is None or self.process.stdin is None:
            return
        with contextlib.suppress(OSError):
            if not drop:
                self.process.stdin.write(RELEASE)
            self.process.stdin.close()
        if not drop:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
