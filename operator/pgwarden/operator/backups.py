"""DatabaseBackup: one Job per generation, or a CronJob for a schedule; runs become lastBackup and history."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.common import parse_duration
from pgwarden.operator import naming
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, backup_cronjob, backup_job
from pgwarden.operator.observe import ObservedRun, parse_time
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
    stamp,
    started,
    without_status,
)

Obj = dict[str, Any]
KIND = "DatabaseBackup"
HISTORY_LIMIT = 10
SCHEDULE_GRACE = timedelta(minutes=1)
_LAST_BACKUP_KEYS = ("id", "location", "sizeBytes", "sha256", "verified")


def human_duration(span: timedelta | None) -> str:
    """A duration the way resources write them: 10s, 30m, 1d2h."""
    seconds = int(span.total_seconds()) if span else 0
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def human_size(size: int | None) -> str:
    if size is None:
        return "? bytes"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _zone(backup: DatabaseBackup) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(backup.spec.time_zone) if backup.spec.time_zone else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def next_run(backup: DatabaseBackup, now: datetime) -> datetime | None:
    """When the CronJob fires next (in UTC), or None when there is no schedule or it is suspended."""
    if not backup.spec.schedule or backup.spec.suspend:
        return None
    zone = _zone(backup) or UTC
    following: datetime = croniter(backup.spec.schedule, now.astimezone(zone)).get_next(datetime)
    return following.astimezone(UTC)


def stale_after(backup: DatabaseBackup, now: datetime) -> timedelta | None:
    """`staleAfter`, or twice the schedule's interval; None for a one-time backup without staleAfter."""
    if backup.spec.stale_after:
        return parse_duration(backup.spec.stale_after)
    if not backup.spec.schedule:
        return None
    zone = _zone(backup) or UTC
    times = croniter(backup.spec.schedule, now.astimezone(zone))
    first: datetime = times.get_next(datetime)
    second: datetime = times.get_next(datetime)
    return 2 * (second - first)


def run_entry(run: ObservedRun) -> Obj:
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
    begun = report.get("startedAt") or stamp(started(run))
    ended = report.get("completedAt") or stamp(run.completed_at)
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
            clip(report_error(report)) if run.report is not None else failure_without_report(run)
        )
    return entry


def last_backup(run: ObservedRun) -> Obj | None:
    report = run.report or {}
    info = report.get("backup") or {}
    if report.get("outcome") != "Succeeded" or not info.get("id"):
        return None
    result: Obj = {key: info[key] for key in _LAST_BACKUP_KEYS if info.get(key) is not None}
    for key in ("tables", "rows", "startedAt", "completedAt", "durationSeconds"):
        if report.get(key) is not None:
            result[key] = report[key]
    return result


def _when(entry: Obj) -> str:
    return str(entry.get("completedAt") or entry.get("startedAt") or "")


def _moment(entry: Obj) -> datetime | None:
    return parse_time(entry.get("completedAt")) or parse_time(entry.get("startedAt"))


def newest_first(history: list[Obj]) -> list[Obj]:
    return sorted(history, key=_when, reverse=True)


def already_recorded(history: list[Obj]) -> Callable[[Obj], bool]:
    """Whether a finished run's entry was recorded before: it is in the history, or the history is full and
    the run ended no later than its oldest entry (it was recorded, then pushed out by newer runs).

    One-time Jobs never expire, so a resource can own more finished Jobs than the history keeps; without
    the second rule each of those would be announced and counted again on every reconcile."""
    known = {entry.get("job") for entry in history}
    oldest = _moment(history[-1]) if len(history) >= HISTORY_LIMIT else None

    def recorded(entry: Obj) -> bool:
        if entry.get("job") in known:
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
        wanted = backup_cronjob(backup, settings)
        current = ((cronjob or {}).get("metadata") or {}).get("annotations") or {}
        if (
            current.get(naming.ANNOTATION_SPEC_HASH)
            == wanted["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH]
        ):
            return None, None
        return wanted, None
    stray = ((cronjob or {}).get("metadata") or {}).get("name")
    generation = meta.generation or 1
    name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
    if any(run.job == name for run in runs):
        return None, stray
    return backup_job(backup, settings), stray


def decide(
    body: Obj, runs: list[ObservedRun], cronjob: Obj | None, settings: JobSettings, now: datetime
) -> Decision:
    """The next step for a DatabaseBackup, from every Job it owns (directly or through its CronJob)."""
    backup = DatabaseBackup.model_validate(without_status(body))
    meta = backup.metadata
    generation = meta.generation or 1
    old: Obj = dict(body.get("status") or {})
    one_time_done = (
        not backup.spec.schedule
        and old.get("observedGeneration") == generation
        and old.get("phase") in ("Succeeded", "Failed")
    )
    create, delete = (None, None) if one_time_done else _desired_workload(backup, runs, cronjob, settings)
    if one_time_done and cronjob is not None:
        delete = cronjob["metadata"]["name"]

    history: list[Obj] = newest_first(old.get("history") or [])
    recorded = already_recorded(history)
    events: list[Event] = []
    finished: list[Finished] = []
    newest_last = old.get("lastBackup")
    for run in sorted((r for r in runs if r.finished), key=lambda r: r.completed_at or now):
        candidate = last_backup(run)
        if candidate and _when(candidate) >= _when(newest_last or {}):
            newest_last = candidate
        entry = run_entry(run)
        if recorded(entry):
            continue
        history.append(entry)
        ok = entry["outcome"] == "Succeeded"
        events.append(
            Event(NORMAL if ok else WARNING, "BackupSucceeded" if ok else "BackupFailed", entry["message"])
        )
        finished.append(
            Finished(
                kind="backup",
                outcome=entry["outcome"],
                duration_seconds=entry.get("durationSeconds"),
                size_bytes=entry.get("sizeBytes") if ok else None,
                completed_at=parse_time(entry.get("completedAt")) or now,
            )
        )
    history = sorted(history, key=_when, reverse=True)[:HISTORY_LIMIT]

    new: Obj = {"observedGeneration": generation, "history": history}
    if newest_last:
        new["lastBackup"] = newest_last
        new["lastSuccessfulTime"] = newest_last.get("completedAt")
    retained = next(
        (
            r.report.get("retained")
            for r in sorted(
                (r for r in runs if r.finished and r.report),
                key=lambda r: r.completed_at or now,
                reverse=True,
            )
            if r.report and r.report.get("retained") is not None
        ),
        old.get("retained"),
    )
    if retained is not None:
        new["retained"] = retained
    following = next_run(backup, now)
    if following:
        new["nextScheduleTime"] = stamp(following)

    active = [run for run in runs if run.active]
    latest = history[0] if history else None
    stuck = next((run for run in active if run.stuck), None)
    if stuck is not None:
        phase, reason, message = "Pending", "JobCannotStart", cannot_start(stuck)
        new["job"] = stuck.job
    elif active:
        phase, reason, message = "Running", "Running", f"Job {active[0].job} is backing up"
        new["job"] = active[0].job
    elif create is not None and create.get("kind") == "Job":
        phase, reason, message = "Pending", "JobCreated", f"Job {create['metadata']['name']} created"
        new["job"] = create["metadata"]["name"]
        events.append(Event(NORMAL, "Started", message))
    elif backup.spec.schedule and backup.spec.suspend:
        phase, reason, message = "Suspended", "Suspended", "the schedule is suspended; no backups run"
    elif latest and latest.get("outcome") == "Failed":
        phase, reason, message = "Failed", "BackupFailed", str(latest.get("message", ""))
    elif backup.spec.schedule:
        phase, reason = "Scheduled", "Scheduled"
        message = f"next backup at {new.get('nextScheduleTime')}"
        if latest:
            message = f"{latest.get('message')}; {message}"
    elif latest:
        phase, reason, message = "Succeeded", "BackupSucceeded", str(latest.get("message", ""))
    else:
        phase, reason, message = "Pending", "Pending", "waiting for the backup Job"
    if "job" not in new and latest:
        new["job"] = latest.get("job")
    new["phase"] = phase
    new["message"] = clip(message)
    if stuck is not None and old.get("message") != new["message"]:
        events.append(Event(WARNING, "CannotStart", new["message"]))

    limit = stale_after(backup, now)
    reference = (
        parse_time(new.get("lastSuccessfulTime"))
        or parse_time(body["metadata"].get("creationTimestamp"))
        or now
    )
    stale = limit is not None and now - reference > limit
    ready = phase in ("Succeeded", "Scheduled", "Suspended", "Running") and not (
        latest and latest.get("outcome") == "Failed"
    )
    if phase == "Running" and not newest_last:
        ready = False
    wants = [
        Want("Ready", ready, reason, new["message"]),
        Want(
            "Stale",
            stale,
            "NoRecentBackup" if stale else "Fresh",
            f"no successful backup for more than {human_duration(limit)}"
            if stale
            else (
                f"last successful backup at {new.get('lastSuccessfulTime')}"
                if newest_last
                else "no backup expected yet"
            ),
        ),
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
    if stale and not any(
        c.get("type") == "Stale" and c.get("status") == "True" for c in old.get("conditions") or []
    ):
        events.append(Event(WARNING, "Stale", wants[1].message))
    new["conditions"] = set_conditions(list(old.get("conditions") or []), wants, generation, now)
    # Next look without an event: when it turns stale, or shortly after the next run is due (whose Job
    # would have brought it, so status names the following one).
    candidates = [following + SCHEDULE_GRACE] if following else []
    if limit is not None and not stale:
        candidates.append(reference + limit + timedelta(seconds=1))
    return Decision(
        status=new,
        events=tuple(events),
        create=create,
        delete_cronjob=delete,
        finished=tuple(finished),
        deadline=min(candidates) if candidates else None,
    )
