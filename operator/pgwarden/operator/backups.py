"""DatabaseBackup: one Job per generation, or a CronJob for a schedule; runs become lastBackup and history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgwarden.api.backup import (
    BackupPhase,
    BackupRun,
    CopyStatus,
    DatabaseBackup,
    DatabaseBackupStatus,
    LastBackup,
)
from pgwarden.api.copies import BackupCopy
from pgwarden.api.durations import format_duration, parse_duration
from pgwarden.api.job_report import BackupJobReport
from pgwarden.api.reports import Outcome
from pgwarden.api.retention import RetentionOutcome
from pgwarden.api.sizes import human_size
from pgwarden.operator import drills, naming, schedules
from pgwarden.operator.conditions import Want, is_true, set_conditions
from pgwarden.operator.jobs import JobSettings, backup_cronjob, backup_job, unless_current
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun, parse_time
from pgwarden.operator.resources import copy_reported
from pgwarden.operator.status import (
    NORMAL,
    WARNING,
    Decision,
    Event,
    Finished,
    cannot_start,
    clip,
    failure_without_report,
    outcome_event,
    report_as,
    report_error,
    second,
    stamp,
    started,
    with_stop_reason,
)

KIND = "DatabaseBackup"
HISTORY_LIMIT = 10
SCHEDULE_GRACE = timedelta(minutes=1)
_ONE_TIME_ENDS = (BackupPhase.SUCCEEDED, BackupPhase.FAILED)
_READY_PHASES = (BackupPhase.SUCCEEDED, BackupPhase.SCHEDULED, BackupPhase.SUSPENDED, BackupPhase.RUNNING)


def next_run(backup: DatabaseBackup, now: datetime) -> datetime | None:
    """When the CronJob fires next (in UTC), or None when there is no schedule or it is suspended."""
    if not backup.spec.schedule or backup.spec.suspend:
        return None
    return schedules.next_fire(backup, backup.spec.schedule, now)


def stale_after(backup: DatabaseBackup, now: datetime) -> timedelta | None:
    """`staleAfter`, or twice the schedule's interval; None for a one-time backup without staleAfter."""
    if backup.spec.stale_after:
        return parse_duration(backup.spec.stale_after)
    if not backup.spec.schedule:
        return None
    return schedules.twice_the_interval(backup, backup.spec.schedule, now)


def run_entry(run: ObservedRun) -> BackupRun:
    """One `status.history` entry from a finished run."""
    report = report_as(run, BackupJobReport)
    ok = report.outcome == Outcome.SUCCEEDED if report is not None else run.succeeded
    entry = BackupRun(job=run.job, outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED)
    info = report.backup if report is not None else None
    if info is not None:
        entry.id, entry.location = info.id, info.location
        if info.size_bytes is not None:
            entry.size_bytes = info.size_bytes
    begun = (report.started_at if report is not None else None) or started(run)
    ended = (report.completed_at if report is not None else None) or run.completed_at
    if begun:
        entry.started_at = begun
    if ended:
        entry.completed_at = ended
    if report is not None and report.duration_seconds is not None:
        entry.duration_seconds = report.duration_seconds
    if ok:
        entry.message = clip(
            f"backup {info.id if info else None}: {human_size(info.size_bytes if info else None)}, "
            f"{report.tables if report else None} tables, {report.rows if report else None} rows"
        )
    else:
        entry.message = (
            with_stop_reason(clip(report_error(report)), run)
            if report is not None
            else failure_without_report(run)
        )
    return entry


def last_backup(run: ObservedRun) -> LastBackup | None:
    """`status.lastBackup` from a run that made a backup (None for one that did not)."""
    report = report_as(run, BackupJobReport)
    info = report.backup if report is not None else None
    if report is None or report.outcome != Outcome.SUCCEEDED or info is None or not info.id:
        return None
    last = LastBackup(id=info.id, location=info.location)
    if info.size_bytes is not None:
        last.size_bytes = info.size_bytes
        last.size = human_size(info.size_bytes)  # what kubectl get shows in the Size column
    copy_reported(info, last, ("sha256", "verified"))
    copy_reported(
        report, last, ("tables", "rows", "started_at", "completed_at", "duration_seconds", "encryption")
    )
    if report.copies:
        last.copies = [_copy_status(copy) for copy in report.copies]
    return last


def _copy_status(copy: BackupCopy) -> CopyStatus:
    status = CopyStatus(location=copy.location, verified=copy.verified)
    copy_reported(copy, status, ("sha256", "retained", "error"))
    return status


_NEVER = datetime.min.replace(tzinfo=UTC)


def _moment(entry: BackupRun | LastBackup | None) -> datetime | None:
    return (entry.completed_at or entry.started_at) if entry is not None else None


def _when(entry: BackupRun | LastBackup | None) -> datetime:
    return _moment(entry) or _NEVER


def newest_first(history: list[BackupRun]) -> list[BackupRun]:
    return sorted(history, key=_when, reverse=True)


def already_recorded(history: list[BackupRun]) -> Callable[[BackupRun], bool]:
    """Whether a finished run's entry was recorded before: it is in the history, or the history is full and
    the run ended no later than its oldest entry (it was recorded, then pushed out by newer runs).

    One-time Jobs never expire, so a resource can own more finished Jobs than the history keeps; without
    the second rule each of those would be announced and counted again on every reconcile."""
    known = {entry.job for entry in history}
    oldest = _moment(history[-1]) if len(history) >= HISTORY_LIMIT else None

    def recorded(entry: BackupRun) -> bool:
        if entry.job in known:
            return True
        moment = _moment(entry)
        return oldest is not None and moment is not None and moment <= oldest

    return recorded


def _desired_workload(
    backup: DatabaseBackup, runs: list[ObservedRun], cronjob: Obj | None, settings: JobSettings
) -> tuple[Obj | None, str | None]:
    """(manifest to create or update, CronJob to delete)."""
    meta = backup.metadata
    if backup.spec.schedule:
        return unless_current(backup_cronjob(backup, settings), cronjob), None
    stray = ((cronjob or {}).get("metadata") or {}).get("name")
    generation = meta.generation or 1
    name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
    if any(run.job == name for run in runs):
        return None, stray
    return backup_job(backup, settings), stray


@dataclass
class _Recorded:
    """What the finished backup runs add: the history, the newest complete backup, Events and metrics."""

    history: list[BackupRun]
    newest_last: LastBackup | None
    events: list[Event] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)


def _record_runs(old: DatabaseBackupStatus, runs: list[ObservedRun], now: datetime) -> _Recorded:
    """Each finished run not in the history yet becomes an entry (announced and counted once)."""
    history = newest_first(old.history)
    recorded = already_recorded(history)
    found = _Recorded(history, old.last_backup)
    for run in sorted((r for r in runs if r.finished), key=lambda r: r.completed_at or now):
        candidate = last_backup(run)
        if candidate and _when(candidate) >= _when(found.newest_last):
            found.newest_last = candidate
        entry = run_entry(run)
        if recorded(entry):
            continue
        history.append(entry)
        ok = entry.outcome == Outcome.SUCCEEDED
        found.events.append(outcome_event(ok, "Backup", entry.message))
        found.finished.append(
            Finished(
                kind="backup",
                outcome=str(entry.outcome),
                duration_seconds=entry.duration_seconds,
                size_bytes=entry.size_bytes if ok else None,
                completed_at=entry.completed_at or now,
            )
        )
    found.history = newest_first(history)[:HISTORY_LIMIT]
    return found


def decide(
    backup: DatabaseBackup,
    runs: list[ObservedRun],
    cronjob: Obj | None,
    settings: JobSettings,
    now: datetime,
    drill_runs: list[ObservedRun] | None = None,
    drill_cronjob: Obj | None = None,
) -> Decision[DatabaseBackupStatus]:
    """The next step for a DatabaseBackup, from every Job it owns (directly or through its CronJobs):
    `runs` are its backups', `drill_runs` its restore drills' (verify.schedule, their own CronJob)."""
    now = second(now)
    generation = backup.metadata.generation or 1
    old = backup.status or DatabaseBackupStatus()
    one_time_done = (
        not backup.spec.schedule and old.observed_generation == generation and old.phase in _ONE_TIME_ENDS
    )
    create, delete = (None, None) if one_time_done else _desired_workload(backup, runs, cronjob, settings)
    if one_time_done and cronjob is not None:
        delete = cronjob["metadata"]["name"]

    found = _record_runs(old, runs, now)
    drilled = drills.observe_drills(old, drill_runs or [], now)
    new = _observed_status(backup, old, runs, found, drilled, now)
    phase, reason, message, stuck = _phase(backup, runs, create, new)
    new.phase = phase
    new.message = clip(message)
    events = [*found.events, *drilled.events]
    if stuck and old.message != new.message:
        events.append(Event(WARNING, "CannotStart", new.message))
    if reason == "JobCreated":
        events.append(Event(NORMAL, "Started", new.message))
    looks = _conditions(backup, old, new, drilled, reason, events, now)
    drill_apply, drill_delete = drills.workload(backup, drill_cronjob, settings)
    return Decision(
        status=new,
        events=tuple(events),
        create=create,
        delete_cronjob=delete,
        finished=(*found.finished, *drilled.finished),
        deadline=min(looks) if looks else None,
        apply_cronjobs=(drill_apply,) if drill_apply is not None else (),
        delete_cronjobs=(drill_delete,) if drill_delete is not None else (),
    )


def _observed_status(
    backup: DatabaseBackup,
    old: DatabaseBackupStatus,
    runs: list[ObservedRun],
    found: _Recorded,
    drilled: drills.Drills,
    now: datetime,
) -> DatabaseBackupStatus:
    """The status the runs and drills say, before its phase and conditions are decided."""
    new = DatabaseBackupStatus(observed_generation=backup.metadata.generation or 1, history=found.history)
    if drilled.last is not None:
        new.last_verified_backup = drilled.last
    if drilled.verified_time is not None:
        new.last_verified_time = drilled.verified_time
    if found.newest_last:
        new.last_backup = found.newest_last
        new.last_successful_time = found.newest_last.completed_at
    retained, retention = _retained(runs, now)
    if retained is not None or old.retained is not None:
        new.retained = retained if retained is not None else old.retained
    if retention is not None or old.retention is not None:
        new.retention = retention if retention is not None else old.retention
    following = next_run(backup, now)
    if following:
        new.next_schedule_time = second(following)
    return new


def _conditions(
    backup: DatabaseBackup,
    old: DatabaseBackupStatus,
    new: DatabaseBackupStatus,
    drilled: drills.Drills,
    reason: str,
    events: list[Event],
    now: datetime,
) -> list[datetime]:
    """Sets Ready, Stale, Suspended (and Verified) on `new`, announcing a backup turning stale in `events`;
    the moments it needs a look without an event: when it turns stale, or shortly after the next run is due
    (whose Job would have brought it, so status names the following one)."""
    limit = stale_after(backup, now)
    created = parse_time((backup.metadata.model_extra or {}).get("creationTimestamp"))
    reference = new.last_successful_time or created or now
    stale = limit is not None and now - reference > limit
    fresh = drills.freshness(backup, drilled.verified_time, created, now)
    verified_limit = format_duration(fresh.limit)
    latest = new.history[0] if new.history else None
    ready = new.phase in _READY_PHASES and not (latest and latest.outcome == Outcome.FAILED)
    if new.phase == BackupPhase.RUNNING and not new.last_backup:
        ready = False
    wants = [
        Want("Ready", ready, reason, new.message or ""),
        _stale_want(stale, fresh, format_duration(limit), verified_limit, new),
        _suspended_want(backup),
    ]
    if (stale or fresh.stale) and not is_true(old.conditions, "Stale"):
        events.append(Event(WARNING, "Stale", wants[1].message))
    verified = drills.verified_want(backup, drilled, fresh, verified_limit)
    if verified is not None:
        wants.append(verified)
    new.conditions = set_conditions(old.conditions, wants, backup.metadata.generation or 1, now)
    following = next_run(backup, now)
    looks = [following + SCHEDULE_GRACE] if following else []
    if limit is not None and not stale:
        looks.append(reference + limit + timedelta(seconds=1))
    if fresh.due is not None:
        looks.append(fresh.due)
    return looks


def _suspended_want(backup: DatabaseBackup) -> Want:
    if backup.spec.suspend:
        message = "spec.suspend is true"
    else:
        message = "the schedule is active" if backup.spec.schedule else "one-time backup"
    suspended = bool(backup.spec.schedule and backup.spec.suspend)
    return Want("Suspended", suspended, "Suspended" if backup.spec.suspend else "Active", message)


def _stale_want(
    stale: bool, fresh: drills.Freshness, limit: str, verified_limit: str, new: DatabaseBackupStatus
) -> Want:
    """Stale: no successful backup, or (with restore drills) no verified restore, for longer than allowed."""
    if stale:
        return Want("Stale", True, "NoRecentBackup", f"no successful backup for more than {limit}")
    if fresh.stale:
        return Want(
            "Stale",
            True,
            "NoRecentVerifiedRestore",
            f"no restore drill succeeded for more than {verified_limit}",
        )
    if new.last_backup is None:
        message = "no backup expected yet"
    else:
        message = f"last successful backup at {stamp(new.last_successful_time)}"
    if fresh.limit is not None:
        message += (
            f"; last verified restore at {stamp(new.last_verified_time)}"
            if new.last_verified_time
            else "; no restore drill succeeded yet"
        )
    return Want("Stale", False, "Fresh", message)


def _retained(runs: list[ObservedRun], now: datetime) -> tuple[int | None, RetentionOutcome | None]:
    """How many backups the newest run that said so kept under the storage prefix, and which, by what rule."""
    for run in sorted(
        (r for r in runs if r.finished and r.report), key=lambda r: r.completed_at or now, reverse=True
    ):
        report = report_as(run, BackupJobReport)
        if report is not None and report.retained is not None:
            return report.retained, report.retention
    return None, None


def _phase(
    backup: DatabaseBackup, runs: list[ObservedRun], create: Obj | None, new: DatabaseBackupStatus
) -> tuple[BackupPhase, str, str, bool]:
    """(phase, reason, message, stuck) from the runs and the history; names the Job concerned in `new`."""
    active = [run for run in runs if run.active]
    latest = new.history[0] if new.history else None
    stuck = next((run for run in active if run.stuck), None)
    if stuck is not None:
        new.job = stuck.job
        return BackupPhase.PENDING, "JobCannotStart", cannot_start(stuck), True
    if active:
        new.job = active[0].job
        return BackupPhase.RUNNING, "Running", f"Job {active[0].job} is backing up", False
    if latest:
        new.job = latest.job
    if create is not None and create.get("kind") == "Job":
        new.job = create["metadata"]["name"]
        return BackupPhase.PENDING, "JobCreated", f"Job {new.job} created", False
    if backup.spec.schedule and backup.spec.suspend:
        return BackupPhase.SUSPENDED, "Suspended", "the schedule is suspended; no backups run", False
    if latest and latest.outcome == Outcome.FAILED:
        return BackupPhase.FAILED, "BackupFailed", latest.message or "", False
    if backup.spec.schedule:
        message = f"next backup at {stamp(new.next_schedule_time)}"
        return (
            BackupPhase.SCHEDULED,
            "Scheduled",
            f"{latest.message}; {message}" if latest else message,
            False,
        )
    if latest:
        return BackupPhase.SUCCEEDED, "BackupSucceeded", latest.message or "", False
    return BackupPhase.PENDING, "Pending", "waiting for the backup Job", False
