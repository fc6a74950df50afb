"""Restore drills of a DatabaseBackup (verify.schedule): their CronJob, their finished Jobs as
`lastVerifiedBackup`, and whether a verified restore is recent enough. Pure: runs and times in, values out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgwarden.api.backup import DatabaseBackup, DatabaseBackupStatus, VerifiedBackup
from pgwarden.api.drill import DrillReport
from pgwarden.api.durations import parse_duration
from pgwarden.api.reports import Difference, Outcome, RestoreComparison
from pgwarden.api.task import JobKind, Task, backup_scope
from pgwarden.operator import naming, schedules
from pgwarden.operator.conditions import Want
from pgwarden.operator.jobs import (
    DRILL,
    JobSettings,
    PodParts,
    identity_volume,
    resource_id,
    schedule_cronjob,
    unless_current,
)
from pgwarden.operator.objects import Manifest, Obj
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.resources import copy_reported
from pgwarden.operator.status import (
    Event,
    Finished,
    clip,
    failure_without_report,
    outcome_event,
    report_as,
    report_error,
    second,
    stamp,
    succeeded_without_report,
    table_differences,
)

DIFFERENCES_LIMIT = 20


def _drill_parts(backup: DatabaseBackup) -> PodParts:
    """A drill's pod: the server it restores on (verify.server, else the backed-up database's; never that
    database itself), the storage (or copy) it reads, and the identity when the backups are sealed."""
    meta = backup.metadata
    verify = backup.spec.verify
    storage = backup.spec.storage
    if verify.copy_index is not None and verify.copy_index < len(backup.spec.copies):
        storage = backup.spec.copies[verify.copy_index].storage
    volumes: tuple[Manifest, ...] = ()
    mounts: tuple[Manifest, ...] = ()
    encryption = backup.spec.encryption
    if encryption is not None and encryption.identity_secret_ref is not None:
        volume, mount = identity_volume(encryption.identity_secret_ref)
        volumes, mounts = (volume,), (mount,)
    scope = backup_scope(meta.namespace or "", meta.name or "")
    return PodParts(
        task=Task(kind=JobKind.DRILL, resource=resource_id(backup), backup=backup.spec, backup_scope=scope),
        database=verify.server or backup.spec.database,
        storage=storage,
        template=backup.spec.job_template,
        volumes=volumes,
        mounts=mounts,
    )


def drill_cronjob(backup: DatabaseBackup, settings: JobSettings) -> Manifest:
    """The CronJob of a DatabaseBackup's restore drills (verify.schedule): never two at once, no retries (a
    drill that failed says so; running it again could hide what it found)."""
    meta = backup.metadata
    assert backup.spec.verify.schedule is not None
    name = naming.drill_cronjob_name(meta.name or "", meta.uid or "")
    return schedule_cronjob(
        backup,
        name,
        backup.spec.verify.schedule,
        _drill_parts(backup),
        settings,
        backoff_limit=0,
        task_label=DRILL,
    )


def workload(
    backup: DatabaseBackup, cronjob: Obj | None, settings: JobSettings
) -> tuple[Obj | None, str | None]:
    """(drill CronJob to create or replace, drill CronJob to delete): one while verify.schedule is set."""
    if backup.spec.verify.schedule:
        return unless_current(drill_cronjob(backup, settings), cronjob), None
    return None, ((cronjob or {}).get("metadata") or {}).get("name")


def _differences(verification: RestoreComparison | None) -> list[Difference]:
    if verification is None:
        return []
    found = table_differences(verification)
    if verification.schema_matches is False:
        schema = "the restored schema's fingerprint differs"
        found.insert(0, Difference(kind="schema", object="database", detail=schema))
    return found[:DIFFERENCES_LIMIT]


def record(run: ObservedRun, now: datetime) -> VerifiedBackup:
    """`lastVerifiedBackup` from a finished drill Job (its report, else what the Job says)."""
    report = report_as(run, DrillReport)
    if report is None:
        ok = run.succeeded
        return VerifiedBackup(
            job=run.job,
            time=second(run.completed_at or now),
            differences=[],
            message=succeeded_without_report(run) if ok else f"drill failed: {failure_without_report(run)}",
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
        )
    ok = report.outcome == Outcome.SUCCEEDED
    backup = report.backup
    entry = VerifiedBackup(
        job=run.job,
        time=second(run.completed_at or now),
        differences=_differences(report.verification),
        message=clip(
            f"backup {backup.id if backup else None} restored in {report.restore_seconds}s and matched its "
            f"manifest: {report.tables} tables, {report.rows} rows"
            if ok
            else f"drill failed: {report_error(report) or 'no error given'}"
        ),
        outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
    )
    if backup is not None and backup.id:
        entry.id = backup.id
    if backup is not None and backup.location:
        entry.location = backup.location
    copy_reported(report, entry, ("duration_seconds", "restore_seconds", "tables", "rows"))
    return entry


def recorded(last: VerifiedBackup | None, run: ObservedRun) -> bool:
    """Whether a finished drill is in status already: the last one recorded, or one that ended before it."""
    if last is None:
        return False
    if run.job == last.job or run.completed_at is None:
        return True
    return last.time is not None and second(run.completed_at) <= last.time


@dataclass
class Drills:
    """What the finished drills add to status, and what is announced and counted for them."""

    last: VerifiedBackup | None
    verified_time: datetime | None
    events: list[Event] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)


def observe_drills(old: DatabaseBackupStatus, runs: Iterable[ObservedRun], now: datetime) -> Drills:
    """The newest finished drill becomes `lastVerifiedBackup`; each one not recorded before is announced once."""
    result = Drills(last=old.last_verified_backup, verified_time=old.last_verified_time)
    for run in sorted((r for r in runs if r.finished), key=lambda r: r.completed_at or now):
        if recorded(result.last, run):
            continue
        entry = record(run, now)
        result.last = entry
        ok = entry.outcome == Outcome.SUCCEEDED
        if ok and entry.time and (result.verified_time is None or entry.time > result.verified_time):
            result.verified_time = entry.time
        result.events.append(outcome_event(ok, "Drill", entry.message))
        result.finished.append(
            Finished(
                kind="drill",
                outcome=str(entry.outcome),
                duration_seconds=entry.duration_seconds,
                completed_at=entry.time,
            )
        )
    return result


def stale_after(backup: DatabaseBackup, now: datetime) -> timedelta | None:
    """How old the last verified restore may get: verify.staleAfter, or twice the drills' interval; None
    without drills."""
    verify = backup.spec.verify
    if not verify.schedule:
        return None
    if verify.stale_after:
        return parse_duration(verify.stale_after)
    return schedules.twice_the_interval(backup, verify.schedule, now)


@dataclass(frozen=True)
class Freshness:
    """Whether the last verified restore is too old, and since when it counts."""

    limit: timedelta | None
    reference: datetime
    stale: bool

    @property
    def due(self) -> datetime | None:
        """When it turns stale, for the next look; None when it is or never will."""
        return (
            None if self.limit is None or self.stale else self.reference + self.limit + timedelta(seconds=1)
        )


def freshness(
    backup: DatabaseBackup, verified_time: datetime | None, created: datetime | None, now: datetime
) -> Freshness:
    limit = stale_after(backup, now)
    reference = verified_time or created or now
    return Freshness(limit, reference, limit is not None and now - reference > limit)


def verified_want(backup: DatabaseBackup, drills: Drills, fresh: Freshness, human: str) -> Want | None:
    """The Verified condition, while drills are scheduled or one was recorded; `human` is the limit in words."""
    last = drills.last
    if not backup.spec.verify.schedule and last is None:
        return None
    if last is None:
        if fresh.stale:
            return Want(
                "Verified",
                False,
                "NoRecentVerifiedRestore",
                f"no restore drill succeeded for more than {human}",
            )
        return Want("Verified", False, "NotVerifiedYet", "no restore drill has run yet")
    if last.outcome != Outcome.SUCCEEDED:
        return Want("Verified", False, "DrillFailed", last.message or "the last restore drill failed")
    if fresh.stale:
        return Want(
            "Verified",
            False,
            "NoRecentVerifiedRestore",
            f"no restore drill succeeded for more than {human} (last at {stamp(drills.verified_time)})",
        )
    return Want("Verified", True, "DrillSucceeded", last.message or "the last restore drill succeeded")
