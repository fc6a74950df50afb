"""Which targets of a DatabaseMigrationSet start now: a pure function of where each target stands.

The first `canary` targets (in rollout order) run alone; once that many succeeded the rest start, at most
`maxParallel` at once; a failed canary, or `maxFailures` failed targets, halts the set: nothing new starts,
what runs finishes. The same standings always give the same plan, so deciding twice starts nothing twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pgwarden.api.sets import Rollout


class Standing(StrEnum):
    """Where one target stands in the rollout of the set's current spec."""

    NEW = "New"  # no child yet (being created)
    WAITING = "Waiting"  # a child, not started: waits for its turn (or the set's approval)
    RUNNING = "Running"  # started by the set (approved), not finished
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Halt(StrEnum):
    CANARY_FAILED = "CanaryFailed"
    MAX_FAILURES = "MaxFailures"


@dataclass(frozen=True)
class Plan:
    """The targets to start now, and whether (and why) the set is halted."""

    start: tuple[str, ...] = ()
    halted: Halt | None = None
    canary_left: int = 0  # canaries still to succeed before the rest may start


def plan(standings: Sequence[tuple[str, Standing]], rollout: Rollout, *, approved: bool) -> Plan:
    """`standings` in rollout order; `approved`: whether the set may start anything (Manual sets)."""
    count = Counter(standing for _, standing in standings)
    canary_left = max(min(rollout.canary, len(standings)) - count[Standing.SUCCEEDED], 0)
    halted = None
    if count[Standing.FAILED] >= rollout.max_failures:
        halted = Halt.MAX_FAILURES
    elif canary_left and count[Standing.FAILED]:
        halted = Halt.CANARY_FAILED
    if halted is not None or not approved:
        return Plan(halted=halted, canary_left=canary_left)
    limit = min(rollout.max_parallel, canary_left) if canary_left else rollout.max_parallel
    slots = max(limit - count[Standing.RUNNING], 0)
    # While canaries are due, only the first `canary` targets may start (one not created yet waits its turn).
    pool = standings[: rollout.canary] if canary_left else standings
    waiting = [target for target, standing in pool if standing == Standing.WAITING]
    return Plan(start=tuple(waiting[:slots]), canary_left=canary_left)
