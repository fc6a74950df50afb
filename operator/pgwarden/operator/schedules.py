"""When a DatabaseBackup's CronJobs fire (its backups' and its restore drills'): in spec.timeZone, as Kubernetes
reads their schedules. Pure: a schedule and a time in, times out."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

from pgwarden.api.backup import DatabaseBackup


def zone(backup: DatabaseBackup) -> tzinfo:
    """The time zone both CronJobs fire in: spec.timeZone, else UTC (a zone this machine lacks: UTC)."""
    try:
        return zoneinfo.ZoneInfo(backup.spec.time_zone) if backup.spec.time_zone else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def next_fire(backup: DatabaseBackup, schedule: str, now: datetime) -> datetime:
    """When `schedule` fires next after `now`, in UTC."""
    following: datetime = croniter(schedule, now.astimezone(zone(backup))).get_next(datetime)
    return following.astimezone(UTC)


def twice_the_interval(backup: DatabaseBackup, schedule: str, now: datetime) -> timedelta:
    """Twice the time between the next two runs of `schedule`: how old a result may get by default before it
    counts as stale (one run may be missed)."""
    times = croniter(schedule, now.astimezone(zone(backup)))
    first: datetime = times.get_next(datetime)
    following: datetime = times.get_next(datetime)
    return 2 * (following - first)
