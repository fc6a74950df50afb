"""One migrator per database: a session advisory lock, and retries with backoff for lock timeouts."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

from pgwarden.engine.errors import PgwardenError

log = logging.getLogger(__name__)
T = TypeVar("T")


class MigratorBusy(PgwardenError):
    """Another migrator held the database's lock for longer than we were willing to wait."""


def lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for pgwarden's history schema in this database."""
    digest = hashlib.sha256(f"pgwarden:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def migrator_lock(
    conn: psycopg.Connection[Any], schema: str, *, wait_seconds: float = 600.0, poll: float = 0.2
) -> Iterator[None]:
    """Hold the per-database migrator lock for the block; wait for another migrator to finish first."""
    key = lock_key(schema)
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
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, pgerrors.LockNotAvailable)


def retry_on_lock_timeout(
    attempt: Callable[[], T],
    *,
    attempts: int = 5,
    first_delay: float = 0.5,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run `attempt`, re-running it with exponential backoff while it fails on lock_timeout."""
    delay = first_delay
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except pgerrors.LockNotAvailable:
            if number == attempts:
                raise
            log.warning("lock timeout (attempt %d of %d); retrying in %.1fs", number, attempts, delay)
            if on_retry is not None:
                on_retry()
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
