"""Who blocks the run: a second session looks, a few times a second, whether the run's session waits on a lock
and, if it does, which sessions it waits for (engine.postgres.blockers).

A lock wait that times out is over before anyone can ask who held the lock, so the answer is taken while the
wait lasts; the last sessions seen are handed to the lock retry that the timeout causes.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from pgwarden.api.reports import Blocker
from pgwarden.engine.postgres.blockers import read_blockers
from pgwarden.engine.postgres.connect import connect
from pgwarden.errors import PgwardenError
from pgwarden.threads import start_helper

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 0.1


class BlockerWatch:
    """`with BlockerWatch(url, pid) as watch: ...; watch.take()` gives the sessions last seen blocking `pid`."""

    def __init__(self, url: str, pid: int, interval: float = DEFAULT_INTERVAL) -> None:
        self.url = url
        self.pid = pid
        self.interval = interval
        self._seen: list[Blocker] = []
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._watch, name="pgwarden-blockers", daemon=True)

    def __enter__(self) -> BlockerWatch:
        try:
            self._conn = connect(self.url, autocommit=True, connect_timeout=5)
        except PgwardenError as exc:  # the run goes on; its lock retries then name no blocker
            log.debug("no blocker watch: %s", exc)
            return self
        start_helper(self._thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    def follow(self, pid: int) -> None:
        """Watch another session of the run (after a reconnect)."""
        with self._guard:
            self.pid, self._seen = pid, []

    def clear(self) -> None:
        """Forget what was seen (an attempt starts)."""
        with self._guard:
            self._seen = []

    def take(self) -> list[Blocker]:
        """The sessions last seen blocking the run since the last `clear`/`take`, forgotten here."""
        with self._guard:
            seen, self._seen = self._seen, []
        return seen

    def _watch(self) -> None:
        assert self._conn is not None
        while not self._stop.wait(self.interval):
            try:
                blockers = read_blockers(self._conn, self.pid)
            except psycopg.Error as exc:
                log.debug("blocker watch stopped: %s", exc)
                return
            if blockers:
                with self._guard:
                    self._seen = blockers
