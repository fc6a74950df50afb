"""DatabaseMigration: from the resource and its observed Job to the next step, status, conditions and Events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.migration import (
    INLINE_SQL_LIMIT,
    Approval,
    DatabaseMigration,
    DatabaseMigrationStatus,
    MigrationPhase,
)
from pgwarden.operator import approval, naming, previews, recovery, rehearsals
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, TaskTooLarge, migration_job, recovery_job, with_files
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
KIND = "DatabaseMigration"

# Report fields copied onto status as they are (the names are shared by design).
_REPORT_FIELDS = ("currentVersion", "applied", "pending", "tables", "rows", "rowChanges", "verification")
_REPORT_BLOCKS = ("backup", "rollback", "drift")
# How often a migration awaiting approval of ConfigMap files looks at them again (their edits send no event).
CONFIG_MAP_LOOK = timedelta(seconds=30)


def summary(report: Obj) -> str:
    """One line a person reads in `kubectl get dbmig -o wide`."""
    outcome = report.get("outcome")
    if outcome == "Succeeded":
        applied = report.get("applied") or []
        total = report.get("appliedTotal", len(applied))
        version = report.get("currentVersion") or "(none)"
        tables = (report.get("tables") or {}).get("after")
        rows = (report.get("rows") or {}).get("after")
        counts = f"; {tables} tables, {rows} rows" if tables is not None else ""
        if not total:
            return f"up to date at version {version}{counts}"
        return f"applied {total} migration(s), now at version {version}{counts}"
    error = report_error(report) or "the run failed"
    rollback = report.get("rollback") or {}
    if outcome == "RolledBack":
        return clip(f"rolled back ({rollback.get('strategy', 'transaction')}): {error}")
    if rollback:
        return clip(f"failed, rollback {rollback.get('outcome')}: {error} ({rollback.get('message') or ''})")
    return clip(error)


def _from_report(report: Obj) -> Obj:
    fields: Obj = {key: report[key] for key in _REPORT_FIELDS if report.get(key) is not None}
    fields.update({key: report[key] for key in _REPORT_BLOCKS if report.get(key)})
    if report.get("backup"):
        fields["backup"] = {
            k: v
            for k, v in report["backup"].items()
            if k in ("id", "location", "sizeBytes", "sha256", "verified")
        }
    if report.get("rollback"):
        fields["rollback"] = {
            k: v
            for k, v in report["rollback"].items()
            if k in ("strategy", "outcome", "message", "versionAfter")
        }
    fields["lint"] = list(report.get("lint") or [])
    fields["warnings"] = list(report.get("warnings") or [])
    for key in ("startedAt", "completedAt"):
        if report.get(key):
            fields[key] = report[key]
    if report.get("durationSeconds") is not None:
        fields["durationSeconds"] = report["durationSeconds"]
    return fields


def _phase_conditions(phase: str, reason: str, message: str, drifted: bool | None) -> list[Want]:
    ready = phase == "Succeeded"
    progressing = phase in ("Pending", "Rehearsing", "Running") and reason not in ("JobCannotStart",)
    wants = [
        Want("Ready", ready, reason, message),
        Want("Progressing", progressing, reason, message),
    ]
    if drifted is not None:
        drift_message = (
            "the schema was changed outside pgwarden since the last run" if drifted else "no drift"
        )
        wants.append(Want("Drifted", drifted, "DriftDetected" if drifted else "NoDrift", drift_message))
    return wants


def _run_status(run: ObservedRun) -> tuple[DatabaseMigrationStatus, str, str]:
    """(fields, phase, reason) for an existing Job of this generation."""
    fields = DatabaseMigrationStatus(job=run.job)
    begun = started(run)
    if begun:
        fields.started_at = second(begun)
    if run.finished and run.report is not None:
        fields = merged(fields, lenient(DatabaseMigrationStatus, _from_report(run.report)))
        phase = str(run.report.get("outcome"))
        phase = phase if phase in TERMINAL_PHASES else "Failed"
        fields.message = with_stop_reason(summary(run.report), run)
        return fields, phase, phase
    if run.finished:
        if run.completed_at:
            fields.completed_at = second(run.completed_at)
        if run.succeeded:
            fields.message = succeeded_without_report(run)
            return fields, "Succeeded", "Succeeded"
        fields.message = failure_without_report(run)
        return fields, "Failed", run.failure_reason or "JobFailed"
    if run.stuck:
        fields.message = cannot_start(run)
        return fields, "Pending", "JobCannotStart"
    fields.message = f"Job {run.job} is running the migration"
    return fields, "Running", "Running"


def _carried(
    old: DatabaseMigrationStatus, phase: str, generation: int, manual: bool
) -> DatabaseMigrationStatus:
    """What a new status keeps of the old: what the database looked like until a run says otherwise, and
    the approval of this generation."""
    kept = DatabaseMigrationStatus()
    if phase not in TERMINAL_PHASES:
        kept.current_version, kept.tables, kept.rows, kept.drift = (
            old.current_version,
            old.tables,
            old.rows,
            old.drift,
        )
    elif phase == CANCELLED:
        kept.current_version, kept.tables, kept.rows = old.current_version, old.tables, old.rows
        kept.started_at = old.started_at
    if manual and old.approval is not None and old.approval.generation == generation:
        kept.approval = old.approval
    if old.rehearsal is not None and old.rehearsal.generation == generation:
        kept.rehearsal = old.rehearsal
    if old.preview is not None and old.preview.generation == generation:
        kept.preview = old.preview
        if old.lint:
            kept.lint = old.lint  # the preview's findings, until the run reports its own
    return kept


def decide(
    migration: DatabaseMigration,
    run: ObservedRun | None,
    others_active: list[str],
    settings: JobSettings,
    now: datetime,
    config_maps: approval.ConfigMapFiles | None = None,
    *,
    rehearsal_run: ObservedRun | None = None,
    referenced: DatabaseBackup | None = None,
    preview_run: ObservedRun | None = None,
    recovery_run: ObservedRun | None = None,
) -> Decision[DatabaseMigrationStatus]:
    """The next step for a DatabaseMigration. `run` is the Job of the current generation, if it exists;
    `others_active` names Jobs of earlier generations still running; `config_maps`, for a Manual one whose
    files come from ConfigMaps, what they hold now; `rehearsal_run`, the rehearsal Job of this generation
    (and files); `referenced`, the DatabaseBackup spec.rehearsal.backupRef names; `preview_run`, the Job
    that reads the plan and lint of a Manual one without a rehearsal before it is approved; `recovery_run`,
    the Job recovering what `run` left when it died without a report."""
    now = second(now)
    meta = migration.metadata
    generation = meta.generation or 1
    old = migration.status or DatabaseMigrationStatus()
    name = naming.job_name(KIND, meta.name or "", meta.uid or "", generation)
    create: Obj | None = None
    manual = migration.spec.approval == Approval.MANUAL
    events: list[Event] = []
    finished: list[Finished] = []
    deadline: datetime | None = None

    ours = run is None and old.observed_generation == generation and old.job == name
    if ours and old.phase in TERMINAL_PHASES:
        return Decision(status=old)  # this generation ran; its Job has since been deleted

    fields: DatabaseMigrationStatus
    if ours:  # this generation's Job was created and is gone before it finished: a cancel, never a rerun
        fields = DatabaseMigrationStatus(job=name, message=cancelled(name, "migration run"), completed_at=now)
        phase, reason = CANCELLED, CANCELLED
    elif run is not None:
        fields, phase, reason = _run_status(run)
        if recovery.died(run):  # what the dead Job left is settled by one recovery Job before the phase
            step = recovery.recovery_step(
                run, recovery_run, old.recovered, lambda: recovery_job(migration, run.job, settings)
            )
            fields.recovered, fields.message, create = step.status, step.message, step.create
            phase, reason = step.phase or "Running", step.reason
            fields.current_version = step.current_version or fields.current_version
    elif others_active:
        fields = DatabaseMigrationStatus(
            message=f"waiting for Job {others_active[0]} of an earlier generation to finish"
        )
        phase, reason = "Pending", "WaitingForEarlierRun"
    else:
        fields, phase, reason, create = _next_step(
            migration,
            config_maps,
            settings,
            now,
            rehearsal_run=rehearsal_run,
            referenced=referenced,
            preview_run=preview_run,
        )
        if phase == "AwaitingApproval" and config_maps is not None:  # a ConfigMap edit sends no event
            deadline = now + CONFIG_MAP_LOOK

    new = merged(_carried(old, phase, generation, manual), fields)
    new.phase = MigrationPhase(phase)
    new.observed_generation = generation
    if phase == "Running" and run is not None and old.job == run.job and old.progress is not None:
        new.progress = old.progress  # written by the progress looks (operator/progress.py); gone once it ends
    rehearsing = old.rehearsal.job if old.rehearsal is not None else None
    if phase == "Rehearsing" and rehearsal_run is not None and rehearsal_run.job == rehearsing:
        new.progress = old.progress  # the rehearsal Job's, the same way
    drift = new.drift if "drift" in new.model_fields_set else None
    drifted = drift.detected if drift is not None else None
    begun = started(run) if run else None
    if phase in TERMINAL_PHASES and new.duration_seconds is None and run and run.completed_at and begun:
        new.duration_seconds = round((run.completed_at - begun).total_seconds(), 3)
    new.conditions = set_conditions(
        old.conditions, _phase_conditions(phase, reason, new.message or "", drifted), generation, now
    )

    recovering = reason == recovery.RECOVERING and create is not None  # the recovery Job is made now
    if transitioned(old, new) or (old.message != new.message and phase == "Pending") or recovering:
        events.extend(_events(phase, reason, new))
        if phase in TERMINAL_PHASES and (run is not None or phase == CANCELLED):
            rollback = new.rollback.outcome if new.rollback else None
            finished.append(
                Finished(
                    kind="migrate",
                    outcome=phase,
                    duration_seconds=new.duration_seconds,
                    rollback=rollback if rollback and rollback != "NotNeeded" else None,
                    completed_at=(run.completed_at if run else None) or now,
                )
            )
    if (rehearsed := rehearsals.finished_event(old.rehearsal, new.rehearsal)) is not None:
        events.append(rehearsed)
    return Decision(
        status=new, events=tuple(events), create=create, finished=tuple(finished), deadline=deadline
    )


def digest_of(config_maps: approval.ConfigMapFiles | None) -> str | None:
    """The files' digest a rehearsal of ConfigMap files is named by (None for the spec's own sources)."""
    return approval.digest(approval.checksums(config_maps.files)) if config_maps is not None else None


def _next_step(
    migration: DatabaseMigration,
    config_maps: approval.ConfigMapFiles | None,
    settings: JobSettings,
    now: datetime,
    *,
    rehearsal_run: ObservedRun | None,
    referenced: DatabaseBackup | None,
    preview_run: ObservedRun | None = None,
) -> tuple[DatabaseMigrationStatus, str, str, Obj | None]:
    """(fields, phase, reason, Job to create) when no Job of this generation exists: rehearse it first
    (spec.rehearsal), then await approval (Manual) or run it."""
    manual = migration.spec.approval == Approval.MANUAL
    rehearsed = rehearsals.Rehearsed()
    previewed = previews.Previewed()
    try:
        # The Jobs carry this generation's spec: for inline files, exactly those status showed; for
        # ConfigMaps of a Manual one, the files read now, in place of the ConfigMaps (what is approved).
        if migration.spec.rehearsal is not None:
            subject = _approved(migration, config_maps if manual else None)
            rehearsed = rehearsals.step(
                migration, subject, rehearsal_run, referenced, settings, now, digest_of(config_maps)
            )
        hold = rehearsed.hold
        create: Obj | None = None
        if hold is not None:
            fields = DatabaseMigrationStatus(message=hold.message)
            phase, reason, create = hold.phase, hold.reason, hold.create
            if manual and phase == "Rehearsing":
                fields.approval = approval.shown(migration, approved=False, current=config_maps)
        elif manual and not (given := approval.verdict(migration, config_maps)).approved:
            message = given.message
            if rehearsed.status is not None:
                message = (
                    f"{message}; rehearsal {rehearsed.status.outcome}: {rehearsals.summary(rehearsed.status)}"
                )
            if previews.wanted(migration) and (config_maps is None or config_maps.files):
                subject = _approved(migration, config_maps)
                previewed = previews.step(
                    migration, subject, preview_run, settings, now, digest_of(config_maps)
                )
            if previewed.status is not None:
                message = f"{message}; {previewed.waiting or previewed.status.message}"
                create = previewed.create
            fields = DatabaseMigrationStatus(
                message=clip(message), approval=approval.shown(migration, approved=False, current=config_maps)
            )
            phase, reason = "AwaitingApproval", "AwaitingApproval"
        else:
            create = migration_job(_approved(migration, config_maps if manual else None), settings)
            name = create["metadata"]["name"]
            fields = DatabaseMigrationStatus(job=name, started_at=now, message=f"Job {name} created")
            if manual:
                fields.approval = approval.shown(migration, approved=True, current=config_maps)
            phase, reason = "Pending", "JobCreated"
    except TaskTooLarge as error:
        fields = DatabaseMigrationStatus(message=clip(str(error)))
        phase, reason, create = "Failed", "InvalidSpec", None
    if rehearsed.status is not None:
        fields.rehearsal = rehearsed.status
    if rehearsed.lint is not None:
        fields.lint = lenient(DatabaseMigrationStatus, {"lint": rehearsed.lint}).lint
    if previewed.status is not None:
        fields.preview = previewed.status
    if previewed.lint is not None:
        fields.lint = previewed.lint
    return fields, phase, reason, create


def _approved(migration: DatabaseMigration, config_maps: approval.ConfigMapFiles | None) -> DatabaseMigration:
    """What the Job runs: the migration, or with ConfigMaps approved, the approved files in their place."""
    if config_maps is None:
        return migration
    names = ", ".join(ref.name for ref in migration.spec.migrations.config_map_refs or [])
    if not config_maps.files:
        raise TaskTooLarge(f"ConfigMap {names} holds no migration files (keys named like 0001_init.sql)")
    try:
        return with_files(migration, config_maps.files)
    except ValueError as exc:
        raise TaskTooLarge(
            f"the approved files of ConfigMap {names} hold more than {INLINE_SQL_LIMIT} characters of SQL, more "
            "than a Job can carry as approved; ship larger sets in an image named by digest"
        ) from exc


def _events(phase: str, reason: str, status: DatabaseMigrationStatus) -> list[Event]:
    message = status.message or ""
    if reason in (recovery.RECOVERING, "Recovered", "RecoveryFailed"):
        return [Event(WARNING, reason, message)]
    if reason == "JobCreated":
        return [Event(NORMAL, "Started", message)]
    if reason == "RehearsalCreated":
        return [Event(NORMAL, "Rehearsing", message)]
    if reason == rehearsals.FAILED_REASON:
        return []  # the rehearsal's own Event says it
    if phase == "AwaitingApproval":
        return [Event(NORMAL, "AwaitingApproval", message)]
    if reason == "JobCannotStart":
        return [Event(WARNING, "CannotStart", message)]
    if phase == "Succeeded":
        return [Event(NORMAL, "Succeeded", message)]
    if phase == "RolledBack":
        return [Event(WARNING, "RolledBack", message)]
    if phase == CANCELLED:
        return [Event(WARNING, CANCELLED, message)]
    if phase == "Failed":
        events = [Event(WARNING, "Failed", message)]
        rollback = status.rollback
        if rollback is not None and rollback.outcome in ("Succeeded", "Failed"):
            events.append(Event(WARNING, f"Rollback{rollback.outcome}", clip(rollback.message or "")))
        return events
    return []
