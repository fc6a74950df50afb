"""One migrator per database: session advisory locks, and retries with backoff for lock timeouts.

Two locks, always taken in the same order: one in the maintenance database `postgres`, keyed by the target
database's name, and one in the target database itself. The first survives anything done to the target
database (a restore that swaps it by rename closes every session on it), so no second migrator can start on a
database that is being replaced; the second still serialises migrators when the maintenance database cannot be
reached (then the restore strategy is refused up front, since it needs that database too).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

from pgwarden.errors import PgwardenError

log = logging.getLogger(__name__)
T = TypeVar("T")


class MigratorBusy(PgwardenError):
    """Another migrator held the database's lock for longer than we were willing to wait."""


def lock_key(schema: str, database: str | None = None) -> int:
    """A stable signed 64-bit advisory-lock key for pgwarden's history schema in this database (or, for the
    lock held in the maintenance database, in the named database)."""
    name = f"pgwarden:{schema}" if database is None else f"pgwarden:{database}:{schema}"
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def migrator_lock(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    wait_seconds: float = 600.0,
    poll: float = 0.2,
    database: str | None = None,
) -> Iterator[None]:
    """Hold the per-database migrator lock for the block; wait for another migrator to finish first.

    `database` names the target database when `conn` is on the maintenance database instead."""
    key = lock_key(schema, database)
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            break
        if not announced:
            log.info("another migrator is running on this database; waiting for it to finish")
            announced = True
        if time.monotonic() > deadline:
            raise MigratorBusy(
                f"another migrator held the lock for more than {wait_seconds:.0f}s; try again later"
            )
        time.sleep(poll)
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            with contextlib.suppress(psycopg.Error):  # a lost session has released the lock already
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def is_lock_timeout(exc: BaseException) -> bool:
    """lock_timeout fired: psycopg's own error, or an engine error that carries its SQLSTATE (counts)."""
    return isinstance(exc, pgerrors.LockNotAvailable) or getattr(exc, "sqlstate", None) == "55P03"


OnRetry = Callable[[int, float, BaseException], None]


def spread_delays(attempts: int, within: float, rng: random.Random | None = None) -> list[float]:
    """The pauses between `attempts` tries: `within` seconds shared out evenly, each pause jittered to between
    half and all of its share, so that together they take at most `within`, two runs retrying at once drift
    apart, and no pause shrinks to nothing: between two short lock waits the table is free for a while (with
    doubling pauses the first ones would vanish and the waits come back to back) (pure but for `rng`)."""
    if attempts < 2:
        return []
    share = within / (attempts - 1)
    draw = rng or random.Random()
    return [round(share * draw.uniform(0.5, 1.0), 3) for _ in range(attempts - 1)]


def retry_on_lock_timeout(
    attempt: Callable[[], T],
    *,
    attempts: int = 5,
    first_delay: float = 0.5,
    delays: Sequence[float] | None = None,
    on_retry: OnRetry | None = None,
) -> T:
    """Run `attempt`, re-running it after a pause while it fails on lock_timeout: the given `delays`
    (`spread_delays`), or exponential backoff from `first_delay`.

    `on_retry(attempt_number, delay_seconds, error)` is told of each retry (for the report); after the
    last attempt the lock timeout is raised like any other failure."""
    pauses = list(delays) if delays is not None else [first_delay * 2**n for n in range(attempts - 1)]
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except Exception as exc:
            if not is_lock_timeout(exc) or number == attempts:
                raise
            delay = pauses[number - 1] if number - 1 < len(pauses) else pauses[-1] if pauses else 0.0
            log.warning("lock timeout (attempt %d of %d); retrying in %.1fs", number, attempts, delay)
            if on_retry is not None:
                on_retry(number, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")
