"""Helper threads that leave SIGTERM and SIGINT to the main thread.

The kernel hands a process-directed signal to any thread that does not block it, and CPython runs the
Python handler only in the main thread, at its next bytecode. A SIGTERM taken by a helper thread (pg_dump's
stderr reader, the upload thread, a zstd worker) while the main thread waits in a long read (a stalled
pg_dump, a long statement) waits with it, until Kubernetes' SIGKILL ends the grace period before the run
has rolled back or reported. Threads started here block both signals from birth, so only the main thread
can take them, and its read is interrupted at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

_P = ParamSpec("_P")
_T = TypeVar("_T")


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block SIGTERM and SIGINT in the calling thread for the block: every thread born inside it (Python's,
    or a C library's worker pool) inherits the mask; a signal arriving meanwhile waits and is taken after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_helper(thread: threading.Thread) -> threading.Thread:
    """Start `thread` so that it never takes SIGTERM or SIGINT (masked from its first instruction)."""
    with stop_signals_blocked():
        thread.start()
    return thread


class HelperPool(ThreadPoolExecutor):
    """A thread pool whose workers never take SIGTERM or SIGINT: they are started by `submit` (and `map`,
    which submits), so each is born inside `stop_signals_blocked`."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with stop_signals_blocked():
            return super().submit(fn, *args, **kwargs)
