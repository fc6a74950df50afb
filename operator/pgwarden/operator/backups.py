"""DatabaseBackup: one Job per generation, or a CronJob for a schedule; runs become lastBackup and history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from pgwarden.api.backup import (
    BackupPhase,
    BackupRun,
    DatabaseBackup,
    DatabaseBackupStatus,
    LastBackup,
    RetentionOutcome,
)
from pgwarden.api.durations import format_duration, parse_duration
from pgwarden.operator import drills, naming, schedules
from pgwarden.operator.conditions import Want, is_true, set_conditions
from pgwarden.operator.jobs import JobSettings, backup_cronjob, backup_job, unless_current
from pgwarden.operator.observe import ObservedRun, parse_time
from pgwarden.operator.resources import lenient
from pgwarden.operator.status import (
    NORMAL,
    WARNING,
    Decision,
    Event,
    Finished,
    cannot_start,
    clip,
    failure_without_report,
    report_error,
    second,
    stamp,
    started,
    with_stop_reason,
)

Obj = dict[str, Any]
KIND = "DatabaseBackup"
HISTORY_LIMIT = 10
SCHEDULE_GRACE = timedelta(minutes=1)
_LAST_BACKUP_KEYS = ("id", "location", "sizeBytes", "sha256", "verified")
_COPY_KEYS = ("location", "sha256", "verified", "retained", "error")


def human_size(size: int | None) -> str:
    if size is None:
        return "? bytes"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


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
    report = run.report or {}
    info = report.get("backup") or {}
    entry: Obj = {"job": run.job}
    if run.report is not None:
        entry["outcome"] = "Succeeded" if report.get("outcome") == "Succeeded" else "Failed"
    else:
        entry["outcome"] = "Succeeded" if run.succeeded else "Failed"
    for key in ("id", "location", "sizeBytes"):
        if info.get(key) is not None:
            entry[key] = info[key]
    begun = report.get("startedAt") or started(run)
    ended = report.get("completedAt") or run.completed_at
    if begun:
        entry["startedAt"] = begun
    if ended:
        entry["completedAt"] = ended
    if report.get("durationSeconds") is not None:
        entry["durationSeconds"] = report["durationSeconds"]
    if entry["outcome"] == "Succeeded":
        entry["message"] = clip(
            f"backup {info.get('id')}: {human_size(info.get('sizeBytes'))}, "
            f"{report.get('tables')} tables, {report.get('rows')} rows"
        )
    else:
        entry["message"] = (
            with_stop_reason(clip(report_error(report)), run)
            if run.report is not None
            else failure_without_report(run)
        )
    return lenient(BackupRun, entry)


def last_backup(run: ObservedRun) -> LastBackup | None:
    report = run.report or {}
    info = report.get("backup") or {}
    if report.get("outcome") != "Succeeded" or not info.get("id"):
        return None
    result: Obj = {key: info[key] for key in _LAST_BACKUP_KEYS if info.get(key) is not None}
    for key in ("tables", "rows", "startedAt", "completedAt", "durationSeconds", "encryption"):
        if report.get(key) is not None:
            result[key] = report[key]
    if isinstance(result.get("sizeBytes"), int):
        result["size"] = human_size(result["sizeBytes"])
    copies = [item for item in report.get("copies") or [] if isinstance(item, dict)]
    if copies:
        result["copies"] = [
            {key: item[key] for key in _COPY_KEYS if item.get(key) is not None} for item in copies
        ]
    try:
        return LastBackup.model_validate(result)
    except ValidationError:  # a report without a location or with odd values: no usable lastBackup
        return None


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
    meta = backup.metadata
    generation = meta.generation or 1
    old = backup.status or DatabaseBackupStatus()
    one_time_done = (
        not backup.spec.schedule
        and old.observed_generation == generation
        and old.phase in ("Succeeded", "Failed")
    )
    create, delete = (None, None) if one_time_done else _desired_workload(backup, runs, cronjob, settings)
    if one_time_done and cronjob is not None:
        delete = cronjob["metadata"]["name"]

    history = newest_first(old.history)
    recorded = already_recorded(history)
    events: list[Event] = []
    finished: list[Finished] = []
    newest_last = old.last_backup
    for run in sorted((r for r in runs if r.finished), key=lambda r: r.completed_at or now):
        candidate = last_backup(run)
        if candidate and _when(candidate) >= _when(newest_last):
            newest_last = candidate
        entry = run_entry(run)
        if recorded(entry):
            continue
        history.append(entry)
        ok = entry.outcome == "Succeeded"
        events.append(
            Event(NORMAL if ok else WARNING, "BackupSucceeded" if ok else "BackupFailed", entry.message or "")
        )
        finished.append(
            Finished(
                kind="backup",
                outcome=str(entry.outcome),
                duration_seconds=entry.duration_seconds,
                size_bytes=entry.size_bytes if ok else None,
                completed_at=entry.completed_at or now,
            )
        )
    history = newest_first(history)[:HISTORY_LIMIT]

    new = DatabaseBackupStatus(observed_generation=generation, history=history)
    drilled = drills.observe_drills(old, drill_runs or [], now)
    events += drilled.events
    finished += drilled.finished
    if drilled.last is not None:
        new.last_verified_backup = drilled.last
    if drilled.verified_time is not None:
        new.last_verified_time = drilled.verified_time
    if newest_last:
        new.last_backup = newest_last
        new.last_successful_time = newest_last.completed_at
    retained, retention = _retained(runs, now)
    if retained is not None or old.retained is not None:
        new.retained = retained if retained is not None else old.retained
    if retention is not None or old.retention is not None:
        new.retention = retention if retention is not None else old.retention
    following = next_run(backup, now)
    if following:
        new.next_schedule_time = second(following)

    phase, reason, message, stuck = _phase(backup, runs, create, new)
    new.phase = BackupPhase(phase)
    new.message = clip(message)
    if stuck and old.message != new.message:
        events.append(Event(WARNING, "CannotStart", new.message))
    if reason == "JobCreated":
        events.append(Event(NORMAL, "Started", new.message))

    limit = stale_after(backup, now)
    created = parse_time((meta.model_extra or {}).get("creationTimestamp"))
    reference = new.last_successful_time or created or now
    stale = limit is not None and now - reference > limit
    fresh = drills.freshness(backup, drilled.verified_time, created, now)
    verified_limit = format_duration(fresh.limit)
    latest = history[0] if history else None
    ready = phase in ("Succeeded", "Scheduled", "Suspended", "Running") and not (
        latest and latest.outcome == "Failed"
    )
    if phase == "Running" and not newest_last:
        ready = False
    wants = [
        Want("Ready", ready, reason, new.message),
        _stale_want(stale, fresh, format_duration(limit), verified_limit, new),
        Want(
            "Suspended",
            bool(backup.spec.schedule and backup.spec.suspend),
            "Suspended" if backup.spec.suspend else "Active",
            "spec.suspend is true"
            if backup.spec.suspend
            else "the schedule is active"
            if backup.spec.schedule
            else "one-time backup",
        ),
    ]
    if (stale or fresh.stale) and not is_true(old.conditions, "Stale"):
        events.append(Event(WARNING, "Stale", wants[1].message))
    verified = drills.verified_want(backup, drilled, fresh, verified_limit)
    if verified is not None:
        wants.append(verified)
    new.conditions = set_conditions(old.conditions, wants, generation, now)
    drill_apply, drill_delete = drills.workload(backup, drill_cronjob, settings)
    # Next look without an event: when it turns stale, or shortly after the next run is due (whose Job
    # would have brought it, so status names the following one).
    candidates = [following + SCHEDULE_GRACE] if following else []
    if limit is not None and not stale:
        candidates.append(reference + limit + timedelta(seconds=1))
    if fresh.due is not None:
        candidates.append(fresh.due)
    return Decision(
        status=new,
        events=tuple(events),
        create=create,
        delete_cronjob=delete,
        finished=tuple(finished),
        deadline=min(candidates) if candidates else None,
        apply_cronjobs=(drill_apply,) if drill_apply is not None else (),
        delete_cronjobs=(drill_delete,) if drill_delete is not None else (),
    )


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
        report = run.report or {}
        value = report.get("retained")
        if isinstance(value, int):
            decided = report.get("retention")
            return value, lenient(RetentionOutcome, decided) if isinstance(decided, dict) else None
    return None, None


def _phase(
    backup: DatabaseBackup, runs: list[ObservedRun], create: Obj | None, new: DatabaseBackupStatus
) -> tuple[str, str, str, bool]:
    """(phase, reason, message, stuck) from the runs and the history; names the Job concerned in `new`."""
    active = [run for run in runs if run.active]
    latest = new.history[0] if new.history else None
    stuck = next((run for run in active if run.stuck), None)
    if stuck is not None:
        new.job = stuck.job
        return "Pending", "JobCannotStart", cannot_start(stuck), True
    if active:
        new.job = active[0].job
        return "Running", "Running", f"Job {active[0].job} is backing up", False
    if latest:
        new.job = latest.job
    if create is not None and create.get("kind") == "Job":
        new.job = create["metadata"]["name"]
        return "Pending", "JobCreated", f"Job {new.job} created", False
    if backup.spec.schedule and backup.spec.suspend:
        return "Suspended", "Suspended", "the schedule is suspended; no backups run", False
    if latest and latest.outcome == "Failed":
        return "Failed", "BackupFailed", latest.message or "", False
    if backup.spec.schedule:
        message = f"next backup at {stamp(new.next_schedule_time)}"
        return "Scheduled", "Scheduled", f"{latest.message}; {message}" if latest else message, False
    if latest:
        return "Succeeded", "BackupSucceeded", latest.message or "", False
    return "Pending", "Pending", "waiting for the backup Job", False
