"""DatabaseRestore: resolve the source (a DatabaseBackup's storage and backup, or a raw location), run one Job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.reports import BeforeAfter, Outcome, RestoreReport
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus, RestorePhase, RestoreVerification
from pgwarden.api.task import RestoreSource
from pgwarden.operator import backup_refs, naming, recovery
from pgwarden.operator.backup_refs import Unresolved
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, recovery_job, restore_job
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.resources import copy_reported, merged
from pgwarden.operator.status import (
    CANCELLED,
    NORMAL,
    TERMINAL_PHASES,
    WARNING,
    Decision,
    Event,
    Finished,
    cancelled,
    clip,
    report_as,
    report_error,
    second,
    started,
    table_differences,
    transitioned,
    with_stop_reason,
    without_report,
)

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
    resolved = backup_refs.resolve(ref, referenced, restore.metadata.namespace or "")
    if isinstance(resolved, RestoreSource):
        return resolved
    if resolved == Unresolved.BACKUP_NOT_FOUND or referenced is None:
        message = (
            f"DatabaseBackup {ref.name!r} was not found in namespace {restore.metadata.namespace}; "
            "create it or fix source.backupRef.name"
        )
    elif resolved == Unresolved.COPY_NOT_FOUND:
        message = (
            f"DatabaseBackup {ref.name!r} has {_copies(len(referenced.spec.copies))}, so there is no "
            f"source.backupRef.copy {ref.copy_index} (0 is the first); fix it or add the copy there"
        )
    else:
        message = f"DatabaseBackup {ref.name!r} has no complete backup yet; waiting for one"
    return Waiting(resolved.value, message)


def _copies(count: int) -> str:
    return "no copies" if count == 0 else "1 copy" if count == 1 else f"{count} copies"


def _from_report(report: RestoreReport) -> DatabaseRestoreStatus:
    """What a restore's report puts in status."""
    status = DatabaseRestoreStatus()
    if report.backup is not None:
        status.restored_from = report.backup
    if report.tables is not None:
        status.tables = BeforeAfter(after=report.tables)
    if report.rows is not None:
        status.rows = BeforeAfter(after=report.rows)
    if report.verification is not None:
        status.verification = RestoreVerification(
            matches_backup=report.verification.matches_backup,
            differences=table_differences(report.verification)[:DIFFERENCES_LIMIT],
        )
    copy_reported(report, status, ("started_at", "completed_at", "duration_seconds"))
    if report.restored_tables:
        status.restored_tables = report.restored_tables
    if report.left_out:
        status.left_out = report.left_out
    return status


def summary(report: RestoreReport) -> str:
    backup_id = report.backup.id if report.backup else None
    if report.outcome == Outcome.SUCCEEDED and report.restored_tables:
        names = ", ".join(t.table for t in report.restored_tables[:3])
        more = f" and {len(report.restored_tables) - 3} more" if len(report.restored_tables) > 3 else ""
        return clip(
            f"restored {names}{more} from backup {backup_id}: {report.rows} rows, matching the backup"
        )
    if report.outcome == Outcome.SUCCEEDED:
        rows = "rows not counted" if report.rows is None else f"{report.rows} rows"
        return clip(f"restored backup {backup_id}: {report.tables} tables, {rows}, matching the backup")
    return clip(report_error(report) or "the restore failed")


def pick_run(status: DatabaseRestoreStatus, runs: list[ObservedRun]) -> ObservedRun | None:
    """The restore's one run: the Job its status names, else (a status never written) any Job it owns."""
    if status.job:
        return next((run for run in runs if run.job == status.job), None)
    return runs[0] if runs else None


def _run_fields(run: ObservedRun) -> tuple[DatabaseRestoreStatus, RestorePhase, str]:
    """(fields, phase, reason) from the restore's Job."""
    fields = DatabaseRestoreStatus(job=run.job)
    begun = started(run)
    if begun:
        fields.started_at = second(begun)
    report = report_as(run, RestoreReport)
    if run.finished and report is not None:
        fields = merged(fields, _from_report(report))
        phase = RestorePhase.SUCCEEDED if report.outcome == Outcome.SUCCEEDED else RestorePhase.FAILED
        fields.message = with_stop_reason(summary(report), run)
        return fields, phase, phase.value
    phase_of_run, reason, fields.message = without_report(run, "restoring")
    return fields, RestorePhase(phase_of_run), reason


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
            phase = RestorePhase.RUNNING if step.phase is None else RestorePhase.FAILED
            reason = step.reason
    elif old.job:  # created, and gone before it finished: deleted to cancel the restore
        phase, reason = RestorePhase.CANCELLED, CANCELLED
        new = DatabaseRestoreStatus(job=old.job, message=cancelled(old.job, "restore"), completed_at=now)
        if old.started_at:
            new.started_at = old.started_at
    else:
        source = resolve_source(restore, referenced)
        if isinstance(source, Waiting):
            phase, reason = RestorePhase.PENDING, source.reason
            new = DatabaseRestoreStatus(message=source.message)
        else:
            name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
            create = restore_job(restore, source, settings)
            phase, reason = RestorePhase.PENDING, "JobCreated"
            new = DatabaseRestoreStatus(job=name, started_at=now, message=f"Job {name} created")

    new.phase = phase
    new.observed_generation = generation
    message = new.message or ""
    wants = [
        Want("Ready", phase == RestorePhase.SUCCEEDED, reason, message),
        Want(
            "Progressing",
            phase in (RestorePhase.PENDING, RestorePhase.RUNNING) and reason in ("JobCreated", "Running"),
            reason,
            message,
        ),
    ]
    new.conditions = set_conditions(old.conditions, wants, generation, now)

    events: list[Event] = []
    finished: list[Finished] = []
    if transitioned(old, new) or old.message != new.message:
        if reason in recovery.REASONS:
            events.append(Event(WARNING, reason, message))
        if reason == "JobCreated":
            events.append(Event(NORMAL, "Started", message))
        elif reason == "JobCannotStart":
            events.append(Event(WARNING, "CannotStart", message))
        elif phase == RestorePhase.PENDING:
            events.append(Event(NORMAL, reason, message))
        elif phase in TERMINAL_PHASES and transitioned(old, new):  # Succeeded, Failed or Cancelled
            events.append(Event(NORMAL if phase == RestorePhase.SUCCEEDED else WARNING, phase.value, message))
            finished.append(
                Finished(
                    kind="restore",
                    outcome=phase.value,
                    duration_seconds=new.duration_seconds,
                    completed_at=now,
                )
            )
    return Decision(status=new, events=tuple(events), create=create, finished=tuple(finished))
