"""Which backups and which debris a prune removes: pure decisions over plain data, no storage calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

DEFAULT_DEBRIS_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the `keep_last` newest complete backups and every one younger than `max_age` (a backup either
    rule keeps is kept); with neither set, no complete backup is removed, only debris."""

    keep_last: int | None = None
    max_age: timedelta | None = None
    debris_grace: timedelta = DEFAULT_DEBRIS_GRACE

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise ValueError("keepLast must be at least 1")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError("maxAge must be positive")


@dataclass(frozen=True)
class BackupRecord:
    """A complete backup as retention sees it."""

    id: str
    completed_at: datetime
    verified: bool = False


@dataclass(frozen=True)
class DebrisRecord:
    """Something an incomplete backup left behind, and when it was last written to."""

    name: str
    last_activity: datetime


@dataclass(frozen=True)
class Decision:
    id: str
    reason: str


@dataclass(frozen=True)
class PrunePlan:
    keep: list[Decision] = field(default_factory=list)
    delete: list[Decision] = field(default_factory=list)
    delete_debris: list[DebrisRecord] = field(default_factory=list)
    keep_debris: list[DebrisRecord] = field(default_factory=list)


def _newest(backups: list[BackupRecord]) -> BackupRecord | None:
    return max(backups, key=lambda b: (b.completed_at, b.id), default=None)


def plan_prune(
    backups: list[BackupRecord], debris: list[DebrisRecord], policy: RetentionPolicy, now: datetime
) -> PrunePlan:
    """Decide what to keep and delete. Never deletes the newest complete backup nor the newest verified
    one; debris goes only once nothing has written to it for the grace period (it may be a running backup)."""
    ordered = sorted(backups, key=lambda b: (b.completed_at, b.id), reverse=True)
    newest = _newest(backups)
    newest_verified = _newest([b for b in backups if b.verified])
    plan = PrunePlan()
    for rank, backup in enumerate(ordered):
        reasons = []
        if newest is not None and backup.id == newest.id:
            reasons.append("newest complete backup")
        if newest_verified is not None and backup.id == newest_verified.id:
            reasons.append("newest verified backup")
        if policy.keep_last is not None and rank < policy.keep_last:
            reasons.append(f"among the {policy.keep_last} newest")
        if policy.max_age is not None and now - backup.completed_at < policy.max_age:
            reasons.append("younger than maxAge")
        if policy.keep_last is None and policy.max_age is None:
            reasons.append("no retention rule set")
        if reasons:
            plan.keep.append(Decision(backup.id, "; ".join(reasons)))
        else:
            why = []
            if policy.keep_last is not None:
                why.append(f"not among the {policy.keep_last} newest")
            if policy.max_age is not None:
                why.append("older than maxAge")
            plan.delete.append(Decision(backup.id, " and ".join(why)))
    for item in sorted(debris, key=lambda d: d.name):
        if now - item.last_activity >= policy.debris_grace:
            plan.delete_debris.append(item)
        else:
            plan.keep_debris.append(item)
    return plan
