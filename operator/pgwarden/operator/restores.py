"""DatabaseRestore: resolve the source (a DatabaseBackup's storage and backup, or a raw location), run one Job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import RestoreSource, backup_scope
from pgwarden.operator import naming
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, restore_job
from pgwarden.operator.observe import ObservedRun
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
    stamp,
    started,
    succeeded_without_report,
    transitioned,
    without_status,
)

Obj = dict[str, Any]
KIND = "DatabaseRestore"
DIFFERENCES_LIMIT = 20


@dataclass(frozen=True)
class Waiting:
    """The source cannot be resolved yet; the message says what is missing."""

    reason: str
    message: str


def resolve_source(restore: DatabaseRestore, referenced: Obj | None) -> RestoreSource | Waiting:
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
    backup = DatabaseBackup.model_validate(without_status(referenced))
    status = referenced.get("status") or {}
    # Only the DatabaseBackup's own backups: its folder, its owner label.
    scope = backup_scope(backup.metadata.namespace or restore.metadata.namespace or "", ref.name)
    if ref.id == "latest":
        last = status.get("lastBackup")
        if not last:
            return Waiting(
                "WaitingForBackup", f"DatabaseBackup {ref.name!r} has no complete backup yet; waiting for one"
            )
        return RestoreSource(
            storage=backup.spec.storage, backup_id=None, scope=scope, last_known_id=last.get("id")
        )
    return RestoreSource(storage=backup.spec.storage, backup_id=ref.id, scope=scope)


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
    for key in ("startedAt", "completedAt", "durationSeconds"):
        if report.get(key) is not None:
            fields[key] = report[key]
    return fields


def summary(report: Obj) -> str:
    if report.get("outcome") == "Succeeded":
        backup = report.get("backup") or {}
        return clip(
            f"restored backup {backup.get('id')}: {report.get('tables')} tables, {report.get('rows')} rows, "
            "matching the backup"
        )
    return clip(report_error(report) or "the restore failed")


def pick_run(status: Obj, runs: list[ObservedRun]) -> ObservedRun | None:
    """The restore's one run: the Job its status names, else (a status never written) any Job it owns."""
    if status.get("job"):
        return next((run for run in runs if run.job == status["job"]), None)
    return runs[0] if runs else None


def _run_fields(run: ObservedRun) -> tuple[Obj, str, str]:
    """(fields, phase, reason) from the restore's Job."""
    fields: Obj = {"job": run.job}
    if started(run):
        fields["startedAt"] = stamp(started(run))
    if run.finished and run.report is not None:
        fields.update(_from_report(run.report))
        phase = "Succeeded" if run.report.get("outcome") == "Succeeded" else "Failed"
        fields["message"] = summary(run.report)
        return fields, phase, phase
    if run.succeeded:
        fields["message"] = succeeded_without_report(run)
        return fields, "Succeeded", "Succeeded"
    if run.finished:
        fields["message"] = failure_without_report(run)
        return fields, "Failed", run.failure_reason or "JobFailed"
    if run.stuck:
        fields["message"] = cannot_start(run)
        return fields, "Pending", "JobCannotStart"
    fields["message"] = f"Job {run.job} is restoring"
    return fields, "Running", "Running"


def decide(
    body: Obj, run: ObservedRun | None, referenced: Obj | None, settings: JobSettings, now: datetime
) -> Decision:
    """The next step for a DatabaseRestore; `run` is its Job (`pick_run`), `referenced` the DatabaseBackup of
    a backupRef, if found. A restore runs once: a Job it created is never created again, whatever changes."""
    restore = DatabaseRestore.model_validate(without_status(body))
    meta = restore.metadata
    generation = meta.generation or 1
    old: Obj = dict(body.get("status") or {})
    if run is None and old.get("job") and old.get("phase") in TERMINAL_PHASES:
        return Decision(status=dict(old, observedGeneration=generation))

    create: Obj | None = None
    fields: Obj = {}
    if run is not None:
        fields, phase, reason = _run_fields(run)
    elif old.get("job"):  # created, and gone before it finished: deleted to cancel the restore
        phase = reason = CANCELLED
        fields = {
            "job": old["job"],
            "message": cancelled(str(old["job"]), "restore"),
            "completedAt": stamp(now),
        }
        if old.get("startedAt"):
            fields["startedAt"] = old["startedAt"]
    else:
        source = resolve_source(restore, referenced)
        if isinstance(source, Waiting):
            phase, reason, fields["message"] = "Pending", source.reason, source.message
        else:
            name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
            create = restore_job(restore, source, settings)
            phase, reason = "Pending", "JobCreated"
            fields.update({"job": name, "startedAt": stamp(now), "message": f"Job {name} created"})

    new: Obj = dict(fields)
    new["phase"] = phase
    new["observedGeneration"] = generation
    wants = [
        Want("Ready", phase == "Succeeded", reason, str(new.get("message", ""))),
        Want(
            "Progressing",
            phase in ("Pending", "Running") and reason in ("JobCreated", "Running"),
            reason,
            str(new.get("message", "")),
        ),
    ]
    new["conditions"] = set_conditions(list(old.get("conditions") or []), wants, generation, now)

    events: list[Event] = []
    finished: list[Finished] = []
    if transitioned(old, new) or old.get("message") != new.get("message"):
        message = str(new["message"])
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
                    duration_seconds=new.get("durationSeconds"),
                    completed_at=now,
                )
            )
    return Decision(status=new, events=tuple(events), create=create, finished=tuple(finished))
