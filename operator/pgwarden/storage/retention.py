"""Which backups and which debris a prune removes: pure decisions over plain data, no storage calls.

Rules (each optional, a backup any rule keeps is kept, and every decision names the rules behind it):
keepLast (the N newest), keepDaily/keepWeekly/keepMonthly/keepYearly (the newest backup of each of the N
most recent days, ISO weeks, months, years that have one, counted on the calendar of a time zone: a
period without a backup costs no slot, as in restic and borg), and maxAge. The newest complete and the
newest verified backup are never deleted, whatever the rules say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgwarden.api.choices import DEFAULT_DEBRIS_GRACE as DEFAULT_DEBRIS_GRACE

# The rule names a decision carries: the spec's field names, and the two guarantees.
KEEP_LAST = "keepLast"
KEEP_DAILY = "keepDaily"
KEEP_WEEKLY = "keepWeekly"
KEEP_MONTHLY = "keepMonthly"
KEEP_YEARLY = "keepYearly"
MAX_AGE = "maxAge"
NEWEST_COMPLETE = "newestComplete"
NEWEST_VERIFIED = "newestVerified"
NO_RULE = "noRule"


def time_zone(name: str | None) -> tzinfo:
    """The calendar retention counts on: an IANA time zone by name, UTC when none is named."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone; use e.g. UTC, Europe/Berlin or America/New_York"
        ) from None


@dataclass(frozen=True)
class Period:
    """A calendar bucket: its rule, its name in messages, and the key of a local time's period."""

    rule: str
    unit: str
    key: Callable[[datetime], str]


def _iso_week(local: datetime) -> str:
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


PERIODS = (
    Period(KEEP_DAILY, "day", lambda local: local.date().isoformat()),
    Period(KEEP_WEEKLY, "week", _iso_week),
    Period(KEEP_MONTHLY, "month", lambda local: f"{local.year}-{local.month:02d}"),
    Period(KEEP_YEARLY, "year", lambda local: f"{local.year}"),
)


@dataclass(frozen=True)
class RetentionPolicy:
    """The rules of one owner's retention; with none set, no complete backup is removed, only debris."""

    keep_last: int | None = None
    max_age: timedelta | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    time_zone: tzinfo = UTC
    debris_grace: timedelta = DEFAULT_DEBRIS_GRACE

    def __post_init__(self) -> None:
        for rule, count in self.counts().items():
            if count is not None and count < 1:
                raise ValueError(f"{rule} must be at least 1")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError("maxAge must be positive")

    def counts(self) -> dict[str, int | None]:
        """keepLast and the calendar rules by name, set or not."""
        return {
            KEEP_LAST: self.keep_last,
            KEEP_DAILY: self.keep_daily,
            KEEP_WEEKLY: self.keep_weekly,
            KEEP_MONTHLY: self.keep_monthly,
            KEEP_YEARLY: self.keep_yearly,
        }

    @property
    def has_rules(self) -> bool:
        return self.max_age is not None or any(count is not None for count in self.counts().values())


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
    """One backup kept or deleted: the rules that kept it (none for a deletion) and why, in words."""

    id: str
    reason: str
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrunePlan:
    keep: list[Decision] = field(default_factory=list)
    delete: list[Decision] = field(default_factory=list)
    delete_debris: list[DebrisRecord] = field(default_factory=list)
    keep_debris: list[DebrisRecord] = field(default_factory=list)


def _newest(backups: list[BackupRecord]) -> BackupRecord | None:
    return max(backups, key=lambda b: (b.completed_at, b.id), default=None)


@dataclass(frozen=True)
class _Verdict:
    """What one rule says of every backup: a phrase for each it keeps, one for each it does not."""

    rule: str
    keeps: dict[str, str]
    refuses: dict[str, str]


def _by_period(ordered: list[BackupRecord], period: Period, count: int, zone: tzinfo) -> _Verdict:
    """The newest backup of each of the `count` most recent periods that have one (newest first)."""
    kept: dict[str, str] = {}  # period key -> the backup kept for it
    keeps: dict[str, str] = {}
    refuses: dict[str, str] = {}
    for backup in ordered:
        key = period.key(backup.completed_at.astimezone(zone))
        if key in kept:
            refuses[backup.id] = f"{period.rule} {count}: {period.unit} {key} has a newer backup"
        elif len(kept) < count:
            kept[key] = backup.id
            keeps[backup.id] = f"newest of {period.unit} {key}"
        else:
            refuses[backup.id] = (
                f"{period.rule} {count}: {period.unit} {key} is older than the {count} newest "
                f"{period.unit}s with a backup"
            )
    return _Verdict(period.rule, keeps, refuses)


def _verdicts(ordered: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> list[_Verdict]:
    """Each rule the policy sets, applied on its own to every backup."""
    verdicts = []
    if policy.keep_last is not None:
        n = policy.keep_last
        verdicts.append(
            _Verdict(
                KEEP_LAST,
                {b.id: f"among the {n} newest" for b in ordered[:n]},
                {b.id: f"not among the {n} newest" for b in ordered[n:]},
            )
        )
    counts = policy.counts()
    for period in PERIODS:
        count = counts[period.rule]
        if count is not None:
            verdicts.append(_by_period(ordered, period, count, policy.time_zone))
    if policy.max_age is not None:
        young = {b.id for b in ordered if now - b.completed_at < policy.max_age}
        verdicts.append(
            _Verdict(
                MAX_AGE,
                dict.fromkeys(young, "younger than maxAge"),
                {b.id: "older than maxAge" for b in ordered if b.id not in young},
            )
        )
    return verdicts


def plan_prune(
    backups: list[BackupRecord], debris: list[DebrisRecord], policy: RetentionPolicy, now: datetime
) -> PrunePlan:
    """Decide what to keep and delete, naming for each backup the rules that keep it (or why none does).
    Never deletes the newest complete backup nor the newest verified one; debris goes only once nothing
    has written to it for the grace period (it may be a running backup)."""
    ordered = sorted(backups, key=lambda b: (b.completed_at, b.id), reverse=True)
    newest = _newest(backups)
    newest_verified = _newest([b for b in backups if b.verified])
    verdicts = _verdicts(ordered, policy, now)
    plan = PrunePlan()
    for backup in ordered:
        rules: list[str] = []
        reasons: list[str] = []
        if newest is not None and backup.id == newest.id:
            rules.append(NEWEST_COMPLETE)
            reasons.append("newest complete backup")
        if newest_verified is not None and backup.id == newest_verified.id:
            rules.append(NEWEST_VERIFIED)
            reasons.append("newest verified backup")
        for verdict in verdicts:
            if backup.id in verdict.keeps:
                rules.append(verdict.rule)
                reasons.append(verdict.keeps[backup.id])
        if not policy.has_rules:
            rules.append(NO_RULE)
            reasons.append("no retention rule set")
        if rules:
            plan.keep.append(Decision(backup.id, "; ".join(reasons), tuple(rules)))
        else:
            why = [verdict.refuses[backup.id] for verdict in verdicts]
            plan.delete.append(Decision(backup.id, " and ".join(why)))
    for item in sorted(debris, key=lambda d: d.name):
        if now - item.last_activity >= policy.debris_grace:
            plan.delete_debris.append(item)
        else:
            plan.keep_debris.append(item)
    return plan
