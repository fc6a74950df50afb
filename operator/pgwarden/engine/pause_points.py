"""Named points where tests stop a run to kill or inspect it: PGWARDEN_TEST_PAUSE_AT=name makes the run
announce on stderr that it reached `name` and wait there (an hour); unset, a pause point does nothing."""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "PGWARDEN_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """Wait at `name` in short sleeps: a signal the kernel hands to another thread (pg_dump's stderr reader,
    the upload thread) runs its Python handler only when the main thread next runs bytecode, so one long
    sleep would hold a SIGTERM back for the hour."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"pgwarden-test: paused at {name}", file=sys.stderr, flush=True)
        until = time.monotonic() + 3600
        while time.monotonic() < until:
            time.sleep(0.1)
