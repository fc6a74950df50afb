"""DatabaseRestore: resolve the source (a DatabaseBackup's storage and backup, or a raw location), run one Job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus, RestorePhase
from pgwarden.api.task import RestoreSource, backup_scope
from pgwarden.operator import naming, recovery
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, recovery_job, restore_job
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.resources import lenient, merged
from pgwarden.operator.status import (
    CANCELLED,
    NORMAL,
    TERMINAL_PHASES,
    WARNING,
    Decision,
    Event,
    Finished,
    cancelled,
    cannot_start,
    clip,
    failure_without_report,
    report_error,
    second,
    started,
    succeeded_without_report,
    transitioned,
    with_stop_reason,
)

Obj = dict[str, Any]
KIND = "DatabaseRestore"
DIFFERENCES_LIMIT = 20


@dataclass(frozen=True)
class Waiting:
    """The source cannot be resolved yet; the message says what is missing."""

    reason: str
    message: str


def resolve_source(restore: DatabaseRestore, referenced: DatabaseBackup | None) -> RestoreSource | Waiting:
    """The storage and backup to restore; a backupRef reads its DatabaseBackup (`referenced`, None if absent)."""
    source = restore.spec.source
    if source.backup_ref is None:
        assert source.storage is not None
        return RestoreSource(storage=source.storage, location=source.location)
    ref = source.backup_ref
    if referenced is None:
        return Waiting(
            "BackupNotFound",
            f"DatabaseBackup {ref.name!r} was not found in namespace {restore.metadata.namespace}; "
            "create it or fix source.backupRef.name",
        )
    backup = referenced
    # Only the DatabaseBackup's own backups: its folder, its owner label (a copy keeps both).
    scope = backup_scope(backup.metadata.namespace or restore.metadata.namespace or "", ref.name)
    storage = backup.spec.storage
    if ref.copy_index is not None:
        if ref.copy_index >= len(backup.spec.copies):
            return Waiting(
                "CopyNotFound",
                f"DatabaseBackup {ref.name!r} has {_copies(len(backup.spec.copies))}, so there is no "
                f"source.backupRef.copy {ref.copy_index} (0 is the first); fix it or add the copy there",
            )
        storage = backup.spec.copies[ref.copy_index].storage
    if ref.id == "latest":
        last = backup.status.last_backup if backup.status else None
        if last is None:
            return Waiting(
                "WaitingForBackup", f"DatabaseBackup {ref.name!r} has no complete backup yet; waiting for one"
            )
        return RestoreSource(storage=storage, backup_id=None, scope=scope, last_known_id=last.id)
    return RestoreSource(storage=storage, backup_id=ref.id, scope=scope)


def _copies(count: int) -> str:
    return "no copies" if count == 0 else "1 copy" if count == 1 else f"{count} copies"


def _differences(verification: Obj) -> list[Obj]:
    result = []
    for item in (verification.get("differences") or [])[:DIFFERENCES_LIMIT]:
        expected, actual = item.get("expected"), item.get("actual")
        detail = item.get("detail") or f"expected {expected} rows, found {actual}"
        result.append({"kind": "table", "object": str(item.get("table", "?")), "detail": str(detail)})
    return result


def _from_report(report: Obj) -> Obj:
    fields: Obj = {}
    if report.get("backup"):
        fields["restoredFrom"] = {
            k: v
            for k, v in report["backup"].items()
            if k in ("id", "location", "sizeBytes", "sha256", "verified")
        }
    if report.get("tables") is not None:
        fields["tables"] = {"after": report["tables"]}
    if report.get("rows") is not None:
        fields["rows"] = {"after": report["rows"]}
    verification = report.get("verification")
    if verification:
        fields["verification"] = {
            "matchesBackup": bool(verification.get("matchesBackup")),
            "differences": _differences(verification),
        }
    for key in ("startedAt", "completedAt", "durationSeconds", "restoredTables", "leftOut"):
        if report.get(key):
            fields[key] = report[key]
    return fields


def summary(report: Obj) -> str:
    if report.get("outcome") == "Succeeded" and report.get("restoredTables"):
        backup = report.get("backup") or {}
        names = ", ".join(str(t.get("table")) for t in report["restoredTables"][:3])
        more = f" and {len(report['restoredTables']) - 3} more" if len(report["restoredTables"]) > 3 else ""
        return clip(
            f"restored {names}{more} from backup {backup.get('id')}: {report.get('rows')} rows, matching the backup"
        )
    if report.get("outcome") == "Succeeded":
        backup = report.get("backup") or {}
        rows = "rows not counted" if report.get("rows") is None else f"{report.get('rows')} rows"
        return clip(
            f"restored backup {backup.get('id')}: {report.get('tables')} tables, {rows}, matching the backup"
        )
    return clip(report_error(report) or "the restore failed")


def pick_run(status: DatabaseRestoreStatus, runs: list[ObservedRun]) -> ObservedRun | None:
    """The restore's one run: the Job its status names, else (a status never written) any Job it owns."""
    if status.job:
        return next((run for run in runs if run.job == status.job), None)
    return runs[0] if runs else None


def _run_fields(run: ObservedRun) -> tuple[DatabaseRestoreStatus, str, str]:
    """(fields, phase, reason) from the restore's Job."""
    fields = DatabaseRestoreStatus(job=run.job)
    begun = started(run)
    if begun:
        fields.started_at = second(begun)
    if run.finished and run.report is not None:
        fields = merged(fields, lenient(DatabaseRestoreStatus, _from_report(run.report)))
        phase = "Succeeded" if run.report.get("outcome") == "Succeeded" else "Failed"
        fields.message = with_stop_reason(summary(run.report), run)
        return fields, phase, phase
    if run.succeeded:
        fields.message = succeeded_without_report(run)
        return fields, "Succeeded", "Succeeded"
    if run.finished:
        fields.message = failure_without_report(run)
        return fields, "Failed", run.failure_reason or "JobFailed"
    if run.stuck:
        fields.message = cannot_start(run)
        return fields, "Pending", "JobCannotStart"
    fields.message = f"Job {run.job} is restoring"
    return fields, "Running", "Running"


def decide(
    restore: DatabaseRestore,
    run: ObservedRun | None,
    referenced: DatabaseBackup | None,
    settings: JobSettings,
    now: datetime,
    recovery_run: ObservedRun | None = None,
) -> Decision[DatabaseRestoreStatus]:
    """The next step for a DatabaseRestore; `run` is its Job (`pick_run`), `referenced` the DatabaseBackup of
    a backupRef, if found; `recovery_run` the Job recovering what `run` left when it died without a report.
    A restore runs once: a Job it created is never created again, whatever changes."""
    now = second(now)
    meta = restore.metadata
    generation = meta.generation or 1
    old = restore.status or DatabaseRestoreStatus()
    if run is None and old.job and old.phase in TERMINAL_PHASES:
        return Decision(status=old.model_copy(update={"observed_generation": generation}))

    create: Obj | None = None
    if run is not None:
        new, phase, reason = _run_fields(run)
        if recovery.died(run):  # what the dead Job left is settled by one recovery Job before the phase
            step = recovery.recovery_step(
                run, recovery_run, old.recovered, lambda: recovery_job(restore, run.job, settings)
            )
            new.recovered, new.message, create = step.status, step.message, step.create
            phase = "Running" if step.phase is None else "Failed"
            reason = step.reason
    elif old.job:  # created, and gone before it finished: deleted to cancel the restore
        phase = reason = CANCELLED
        new = DatabaseRestoreStatus(job=old.job, message=cancelled(old.job, "restore"), completed_at=now)
        if old.started_at:
            new.started_at = old.started_at
    else:
        source = resolve_source(restore, referenced)
        if isinstance(source, Waiting):
            phase, reason = "Pending", source.reason
            new = DatabaseRestoreStatus(message=source.message)
        else:
            name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
            create = restore_job(restore, source, settings)
            phase, reason = "Pending", "JobCreated"
            new = DatabaseRestoreStatus(job=name, started_at=now, message=f"Job {name} created")

    new.phase = RestorePhase(phase)
    new.observed_generation = generation
    message = new.message or ""
    wants = [
        Want("Ready", phase == "Succeeded", reason, message),
        Want(
            "Progressing",
            phase in ("Pending", "Running") and reason in ("JobCreated", "Running"),
            reason,
            message,
        ),
    ]
    new.conditions = set_conditions(old.conditions, wants, generation, now)

    events: list[Event] = []
    finished: list[Finished] = []
    if transitioned(old, new) or old.message != new.message:
        if reason in (recovery.RECOVERING, "Recovered", "RecoveryFailed"):
            events.append(Event(WARNING, reason, message))
        if reason == "JobCreated":
            events.append(Event(NORMAL, "Started", message))
        elif reason == "JobCannotStart":
            events.append(Event(WARNING, "CannotStart", message))
        elif phase == "Pending":
            events.append(Event(NORMAL, reason, message))
        elif phase in TERMINAL_PHASES and transitioned(old, new):  # Succeeded, Failed or Cancelled
            events.append(Event(NORMAL if phase == "Succeeded" else WARNING, phase, message))
            finished.append(
                Finished(
                    kind="restore",
                    outcome=phase,
                    duration_seconds=new.duration_seconds,
                    completed_at=now,
                )
            )
    return Decision(status=new, events=tuple(events), create=create, finished=tuple(finished))
