"""Named points where tests stop a run to kill or inspect it: PGWARDEN_TEST_PAUSE_AT=name makes the run
announce on stderr that it reached `name` and wait there (an hour); unset, a pause point does nothing."""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "PGWARDEN_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """Wait at `name`. One long sleep: a SIGTERM interrupts it at once, since no helper thread can take the
    signal away from the main thread (pgwarden.threads)."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"pgwarden-test: paused at {name}", file=sys.stderr, flush=True)
        time.sleep(3600)
