"""DatabaseMigration: from the resource and its observed Job to the next step, status, conditions and Events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.migration import (
    INLINE_SQL_LIMIT,
    Approval,
    DatabaseMigration,
    DatabaseMigrationStatus,
    MigrationPhase,
)
from pgwarden.api.reports import MigrationReport, Outcome, RollbackOutcome
from pgwarden.operator import approval, naming, previews, recovery, rehearsals
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings, TaskTooLarge, migration_job, recovery_job, with_files
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun, parse_time
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
    transitioned,
    with_stop_reason,
    without_report,
)

KIND = "DatabaseMigration"

# How often a migration awaiting approval of ConfigMap files looks at them again (their edits send no event).
CONFIG_MAP_LOOK = timedelta(seconds=30)
_UNDER_WAY = (MigrationPhase.PENDING, MigrationPhase.REHEARSING, MigrationPhase.RUNNING)
_REPORTED = (
    "current_version",
    "applied",
    "pending",
    "tables",
    "rows",
    "row_changes",
    "verification",
    "backup",
    "rollback",
    "drift",
    "duration_seconds",
)


def summary(report: MigrationReport, totals: Mapping[str, int]) -> str:
    """One line a person reads in `kubectl get dbmig -o wide` (`totals`: the lengths of capped lists)."""
    if report.outcome == Outcome.SUCCEEDED:
        total = totals.get("applied", len(report.applied))
        version = report.current_version or "(none)"
        tables, rows = report.tables.after, report.rows.after
        counts = f"; {tables} tables, {rows} rows" if tables is not None else ""
        if not total:
            return f"up to date at version {version}{counts}"
        return f"applied {total} migration(s), now at version {version}{counts}"
    error = report_error(report) or "the run failed"
    rollback = report.rollback
    if report.outcome == Outcome.ROLLED_BACK:
        return clip(f"rolled back ({rollback.strategy if rollback else 'transaction'}): {error}")
    if rollback:
        return clip(f"failed, rollback {rollback.outcome}: {error} ({rollback.message or ''})")
    return clip(error)


def _from_report(report: MigrationReport) -> DatabaseMigrationStatus:
    """What a run's report puts in status: the report's own fields, under the same names (by design)."""
    status = DatabaseMigrationStatus(lint=list(report.lint), warnings=list(report.warnings))
    copy_reported(report, status, _REPORTED)
    if report.started_at and (begun := parse_time(report.started_at)):
        status.started_at = begun
    if report.completed_at and (ended := parse_time(report.completed_at)):
        status.completed_at = ended
    return status


def _phase_conditions(phase: MigrationPhase, reason: str, message: str, drifted: bool | None) -> list[Want]:
    ready = phase == MigrationPhase.SUCCEEDED
    progressing = phase in _UNDER_WAY and reason != "JobCannotStart"
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


def _run_status(run: ObservedRun) -> tuple[DatabaseMigrationStatus, MigrationPhase, str]:
    """(fields, phase, reason) for an existing Job of this generation."""
    fields = DatabaseMigrationStatus(job=run.job)
    begun = started(run)
    if begun:
        fields.started_at = second(begun)
    report = report_as(run, MigrationReport)
    if run.finished and report is not None:
        fields = merged(fields, _from_report(report))
        totals = run.report_notes.totals if run.report_notes else {}
        fields.message = with_stop_reason(summary(report, totals), run)
        return fields, MigrationPhase(report.outcome), str(report.outcome)
    if run.finished and run.completed_at:
        fields.completed_at = second(run.completed_at)
    phase, reason, fields.message = without_report(run, "running the migration")
    return fields, MigrationPhase(phase), reason


def _carried(
    old: DatabaseMigrationStatus, phase: MigrationPhase, generation: int, manual: bool
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
    elif phase == MigrationPhase.CANCELLED:
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
        phase, reason = MigrationPhase.CANCELLED, CANCELLED
    elif run is not None:
        fields, phase, reason, create = _run_or_recovery(migration, run, recovery_run, old, settings)
    elif others_active:
        fields = DatabaseMigrationStatus(
            message=f"waiting for Job {others_active[0]} of an earlier generation to finish"
        )
        phase, reason = MigrationPhase.PENDING, "WaitingForEarlierRun"
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
        if phase == MigrationPhase.AWAITING_APPROVAL and config_maps is not None:  # ConfigMap edits: no event
            deadline = now + CONFIG_MAP_LOOK

    new = merged(_carried(old, phase, generation, manual), fields)
    new.phase = phase
    new.observed_generation = generation
    if _progress_carries(old, phase, run, rehearsal_run):
        new.progress = old.progress
    _close(new, old, reason, run, now)

    recovering = reason == recovery.RECOVERING and create is not None  # the recovery Job is made now
    if (
        transitioned(old, new)
        or (old.message != new.message and phase == MigrationPhase.PENDING)
        or recovering
    ):
        events.extend(_events(phase, reason, new))
        if (ended := _finished(new, run, now)) is not None:
            finished.append(ended)
    if (rehearsed := rehearsals.finished_event(old.rehearsal, new.rehearsal)) is not None:
        events.append(rehearsed)
    return Decision(
        status=new, events=tuple(events), create=create, finished=tuple(finished), deadline=deadline
    )


def _close(
    new: DatabaseMigrationStatus,
    old: DatabaseMigrationStatus,
    reason: str,
    run: ObservedRun | None,
    now: datetime,
) -> None:
    """The run's duration once it ended, and the conditions of the new phase."""
    phase = new.phase or MigrationPhase.PENDING
    drift = new.drift if "drift" in new.model_fields_set else None
    drifted = drift.detected if drift is not None else None
    begun = started(run) if run else None
    if phase in TERMINAL_PHASES and new.duration_seconds is None and run and run.completed_at and begun:
        new.duration_seconds = round((run.completed_at - begun).total_seconds(), 3)
    generation = new.observed_generation or 1
    new.conditions = set_conditions(
        old.conditions, _phase_conditions(phase, reason, new.message or "", drifted), generation, now
    )


def _run_or_recovery(
    migration: DatabaseMigration,
    run: ObservedRun,
    recovery_run: ObservedRun | None,
    old: DatabaseMigrationStatus,
    settings: JobSettings,
) -> tuple[DatabaseMigrationStatus, MigrationPhase, str, Obj | None]:
    """The run's status; for a Job that died without a report, what its one recovery Job makes of it first."""
    fields, phase, reason = _run_status(run)
    if not recovery.died(run):
        return fields, phase, reason, None
    step = recovery.recovery_step(
        run, recovery_run, old.recovered, lambda: recovery_job(migration, run.job, settings)
    )
    fields.recovered, fields.message = step.status, step.message
    fields.current_version = step.current_version or fields.current_version
    phase = MigrationPhase(step.phase) if step.phase else MigrationPhase.RUNNING
    return fields, phase, step.reason, step.create


def _progress_carries(
    old: DatabaseMigrationStatus,
    phase: MigrationPhase,
    run: ObservedRun | None,
    rehearsal_run: ObservedRun | None,
) -> bool:
    """Whether status.progress, written by the progress looks (operator/progress.py), stays: while the same
    Job (the run's, or the rehearsal's) still runs; it goes once that ends."""
    if phase == MigrationPhase.RUNNING:
        return run is not None and old.job == run.job and bool(old.progress)
    rehearsing = old.rehearsal.job if old.rehearsal is not None else None
    return (
        phase == MigrationPhase.REHEARSING and rehearsal_run is not None and rehearsal_run.job == rehearsing
    )


def _finished(new: DatabaseMigrationStatus, run: ObservedRun | None, now: datetime) -> Finished | None:
    """The run that just ended (its Job's, or a cancelled one), for the metrics."""
    if new.phase not in TERMINAL_PHASES or (run is None and new.phase != MigrationPhase.CANCELLED):
        return None
    rollback = new.rollback.outcome if new.rollback else None
    return Finished(
        kind="migrate",
        outcome=str(new.phase),
        duration_seconds=new.duration_seconds,
        rollback=rollback if rollback and rollback != RollbackOutcome.NOT_NEEDED else None,
        completed_at=(run.completed_at if run else None) or now,
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
) -> tuple[DatabaseMigrationStatus, MigrationPhase, str, Obj | None]:
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
            if manual and phase == MigrationPhase.REHEARSING:
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
            phase, reason = MigrationPhase.AWAITING_APPROVAL, "AwaitingApproval"
        else:
            create = migration_job(_approved(migration, config_maps if manual else None), settings)
            name = create["metadata"]["name"]
            fields = DatabaseMigrationStatus(job=name, started_at=now, message=f"Job {name} created")
            if manual:
                fields.approval = approval.shown(migration, approved=True, current=config_maps)
            phase, reason = MigrationPhase.PENDING, "JobCreated"
    except TaskTooLarge as error:
        fields = DatabaseMigrationStatus(message=clip(str(error)))
        phase, reason, create = MigrationPhase.FAILED, "InvalidSpec", None
    if rehearsed.status is not None:
        fields.rehearsal = rehearsed.status
    if rehearsed.lint is not None:
        fields.lint = rehearsed.lint
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


def _events(phase: MigrationPhase, reason: str, status: DatabaseMigrationStatus) -> list[Event]:
    message = status.message or ""
    if reason in recovery.REASONS:
        return [Event(WARNING, reason, message)]
    if reason == "JobCreated":
        return [Event(NORMAL, "Started", message)]
    if reason == "RehearsalCreated":
        return [Event(NORMAL, "Rehearsing", message)]
    if reason == rehearsals.FAILED_REASON:
        return []  # the rehearsal's own Event says it
    if phase == MigrationPhase.AWAITING_APPROVAL:
        return [Event(NORMAL, "AwaitingApproval", message)]
    if reason == "JobCannotStart":
        return [Event(WARNING, "CannotStart", message)]
    if phase == MigrationPhase.SUCCEEDED:
        return [Event(NORMAL, "Succeeded", message)]
    if phase == MigrationPhase.ROLLED_BACK:
        return [Event(WARNING, "RolledBack", message)]
    if phase == MigrationPhase.CANCELLED:
        return [Event(WARNING, CANCELLED, message)]
    if phase == MigrationPhase.FAILED:
        events = [Event(WARNING, "Failed", message)]
        rollback = status.rollback
        if rollback is not None and rollback.outcome in (RollbackOutcome.SUCCEEDED, RollbackOutcome.FAILED):
            events.append(Event(WARNING, f"Rollback{rollback.outcome}", clip(rollback.message or "")))
        return events
    return []
