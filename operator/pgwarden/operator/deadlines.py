"""When a resource needs another look although no event will say so, and one thread that keeps those times.

Events (the resource, its Jobs and CronJob changing) drive every reconcile; a deadline only covers what no
watch announces: a pod stuck on a missing Secret (pods are not watched), a backup turning stale, the next
schedule passing, a restore waiting for its backup. Resources with nothing pending cost nothing.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from pgwarden.operator.status import RunPhase

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # kind, namespace, name

# Phases in which something the operator cannot watch may change: a pod that cannot start, a missing backup.
WAITING_PHASES: frozenset[str] = frozenset({RunPhase.PENDING.value, RunPhase.RUNNING.value})


def next_look(phase: object, deadline: datetime | None, now: datetime, poll: float) -> datetime | None:
    """The next time a resource needs a reconcile no event will trigger: soon while it waits or runs,
    else at its own deadline (stale, next schedule), else never."""
    soon = now + timedelta(seconds=poll) if phase in WAITING_PHASES else None
    times = [time for time in (soon, deadline) if time is not None]
    return min(times) if times else None


class Deadlines:
    """Calls `fire(key)` once each key's time has come; a later `set` for a key replaces its time."""

    def __init__(self, fire: Callable[[Key], None], clock: Callable[[], datetime]) -> None:
        self._fire = fire
        self._clock = clock
        self._due: dict[Key, datetime] = {}
        self._heap: list[tuple[datetime, Key]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pgwarden-deadlines", daemon=True)
        self._thread.start()

    def set(self, key: Key, when: datetime | None) -> None:
        with self._changed:
            if when is None:
                self._due.pop(key, None)
                return
            if self._due.get(key) == when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._changed.notify()

    def at_latest(self, key: Key, when: datetime) -> None:
        """Like `set`, but a time already due sooner stays: a look repeated by every event never comes."""
        with self._changed:  # re-entrant: set takes it again
            due = self._due.get(key)
            if due is None or when < due:
                self.set(key, when)

    def forget(self, key: Key) -> None:
        self.set(key, None)

    def pending(self) -> dict[Key, datetime]:
        with self._changed:
            return dict(self._due)

    def _next_due(self) -> Key:
        with self._changed:
            while True:
                now = self._clock()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # replaced or forgotten
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                wait = (self._heap[0][0] - now).total_seconds() if self._heap else None
                self._changed.wait(timeout=wait)

    def _run(self) -> None:
        while True:
            key = self._next_due()
            try:
                self._fire(key)
            except Exception:  # a failed look must not stop every later one; the next event retries
                log.exception("reconcile of %s/%s/%s at its deadline failed", *key)
