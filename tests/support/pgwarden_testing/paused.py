"""`python -m pgwarden_testing.paused ARGS…`: pgwarden's command line with its pause points live.

The test harness's wrapper (in the test tree only: not in the wheel, not in the image). It installs a hook
in `pgwarden.engine.pause_points`, then runs the command line as `pgwarden ARGS…` would. The hook reads:

- PGWARDEN_TEST_PAUSE_AT: a comma-separated list of point names; `name@N` pauses at the N-th time the run
  reaches `name` (default the first). The run announces `pgwarden-test: paused at NAME` on stderr and waits.
- PGWARDEN_TEST_PAUSE_SECONDS: how long a pause lasts at most (default 600). A paused run keeps its
  deadline: SIGTERM (the kubelet's, at activeDeadlineSeconds) ends the pause at once, since the wait is
  short sleeps between which Python runs its signal handler, and the pause never outlasts this bound.
- PGWARDEN_TEST_TRACE: when set, every point reached is announced (`pgwarden-test: reached NAME`), paused
  or not, so a test can tell where a kill at a random moment landed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

from pgwarden.cli import main
from pgwarden.engine import pause_points

PAUSE_ENV = "PGWARDEN_TEST_PAUSE_AT"
PAUSE_SECONDS_ENV = "PGWARDEN_TEST_PAUSE_SECONDS"
TRACE_ENV = "PGWARDEN_TEST_TRACE"
PAUSED = "pgwarden-test: paused at "
REACHED = "pgwarden-test: reached "


def wanted(spec: str) -> dict[str, int]:
    """{point: the occurrence to pause at} from `a,b@3` (pure)."""
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        points[name] = int(nth) if nth else 1
    return points


class Pauser:
    """The hook: counts each point reached, announces it, and waits at the ones asked for."""

    def __init__(self, points: dict[str, int], seconds: float, trace: bool) -> None:
        self.points = points
        self.seconds = seconds
        self.trace = trace
        self.seen: Counter[str] = Counter()

    def __call__(self, name: str) -> None:
        self.seen[name] += 1
        if self.trace:
            print(f"{REACHED}{name}", file=sys.stderr, flush=True)
        if self.points.get(name) != self.seen[name]:
            return
        print(f"{PAUSED}{name}", file=sys.stderr, flush=True)
        until = time.monotonic() + self.seconds
        while time.monotonic() < until:
            time.sleep(0.05)


def install_from_environment() -> None:
    """Install the hook the environment asks for (nothing asked: none)."""
    points = wanted(os.environ.get(PAUSE_ENV, ""))
    trace = bool(os.environ.get(TRACE_ENV))
    if points or trace:
        seconds = float(os.environ.get(PAUSE_SECONDS_ENV, "600"))
        pause_points.install(Pauser(points, seconds, trace))


if __name__ == "__main__":
    install_from_environment()
    sys.exit(main())
