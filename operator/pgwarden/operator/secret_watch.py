"""Which sets to look at when a Secret appears, changes or goes: a watch of Secret names per namespace.

Only namespaces where a set chooses its targets by selector are watched, from the first such set on, and
the watch sees table rows of names only (`kube.watch_secret_names`), never a label, value or annotation.
It only says "something changed here": the sets of that namespace then list their targets again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pgwarden.operator.deadlines import Key
from pgwarden.operator.kube import Kube, KubeError

log = logging.getLogger(__name__)
RETRY_SECONDS = (1.0, 60.0)  # first and longest wait before watching again after an error


class SecretWatch:
    """Keeps the selector sets of each namespace and calls `changed(key)` for each of them when a Secret of
    their namespace changes (also once whenever the watch starts, so nothing missed meanwhile is lost)."""

    def __init__(self, kube: Kube, changed: Callable[[Key], None]) -> None:
        self._kube = kube
        self._changed = changed
        self._sets: dict[str, set[Key]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    def track(self, key: Key, selects: bool) -> None:
        """Remember (`selects`) or forget a set; the first set of a namespace starts its watch."""
        namespace = key[1]
        with self._guard:
            keys = self._sets.setdefault(namespace, set())
            if not selects:
                keys.discard(key)
                return
            keys.add(key)
            if namespace not in self._threads:
                thread = threading.Thread(
                    target=self._watch, args=(namespace,), name=f"pgwarden-secrets-{namespace}", daemon=True
                )
                self._threads[namespace] = thread
                thread.start()

    def sets_in(self, namespace: str) -> list[Key]:
        with self._guard:
            return sorted(self._sets.get(namespace, ()))

    def _notify(self, namespace: str) -> None:
        for key in self.sets_in(namespace):
            self._changed(key)

    def _watch(self, namespace: str) -> None:
        wait = RETRY_SECONDS[0]
        while True:
            try:
                for _ in self._kube.watch_secret_names(namespace):
                    self._notify(namespace)
                    wait = RETRY_SECONDS[0]
            except KubeError as error:
                if error.status == 403:
                    log.warning(
                        "Secrets in %s are not watched (forbidden): sets there that select their targets see "
                        "new Secrets only when they change; install the chart with sets.selectSecrets=true",
                        namespace,
                    )
                else:
                    log.warning("watching Secret names in %s failed: %s", namespace, error)
                wait = min(wait * 2, RETRY_SECONDS[1])
            except Exception:  # a dropped connection, a timeout: watch again
                log.warning("watching Secret names in %s stopped; watching again", namespace, exc_info=True)
                wait = min(wait * 2, RETRY_SECONDS[1])
            time.sleep(wait)
