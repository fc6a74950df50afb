"""spec.rehearsal of a DatabaseMigration: the rehearsal Job of a generation, and what its report puts in status.

A generation (and, for ConfigMaps, its files) is rehearsed once, by its own Job, before it is approved or run:
the approver of a Manual migration sees status.rehearsal before annotating, and `required: true` keeps a
failed rehearsal from ever reaching the real database. Pure: the caller reads the Jobs and the DatabaseBackup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.encryption import IdentitySecretRef
from pgwarden.api.lint import LintFinding
from pgwarden.api.migration import DatabaseMigration, DatabaseMigrationStatus, MigrationPhase
from pgwarden.api.rehearsal import RehearsalStatus
from pgwarden.api.reports import MigrationReport, Outcome, Rehearsal
from pgwarden.api.task import RestoreSource
from pgwarden.operator import backup_refs, naming
from pgwarden.operator.backup_refs import Unresolved
from pgwarden.operator.jobs import JobSettings, rehearsal_job
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.resources import copy_reported
from pgwarden.operator.status import (
    NORMAL,
    WARNING,
    Event,
    cannot_start,
    clip,
    failure_without_report,
    report_as,
    report_error,
    second,
)

FAILED_REASON = "RehearsalFailed"


@dataclass(frozen=True)
class Stage:
    """Where the rehearsal stands while it holds the run back: the phase, why, and a Job to create."""

    phase: MigrationPhase
    reason: str
    message: str
    create: Obj | None = None


@dataclass(frozen=True)
class Rehearsed:
    """The rehearsal of the current generation as status shows it, and the stage when it holds the run."""

    status: RehearsalStatus | None = None
    hold: Stage | None = None
    lint: list[LintFinding] | None = None


def recorded(old: DatabaseMigrationStatus, generation: int, digest: str | None) -> RehearsalStatus | None:
    """The rehearsal status of exactly this generation and these files, if there is one."""
    found = old.rehearsal
    if found is None or found.generation != generation or found.digest != digest:
        return None
    return found


def job_name(migration: DatabaseMigration, digest: str | None) -> str:
    meta = migration.metadata
    return naming.rehearsal_job_name(meta.name or "", meta.uid or "", meta.generation or 1, digest)


def resolve_source(migration: DatabaseMigration, referenced: DatabaseBackup | None) -> RestoreSource | Stage:
    """The backup to rehearse on; a backupRef reads its DatabaseBackup (`referenced`, None if absent)."""
    spec = migration.spec.rehearsal
    assert spec is not None
    if spec.backup_ref is None:
        assert spec.storage is not None
        return RestoreSource(storage=spec.storage, location=spec.location)
    ref = spec.backup_ref
    namespace = migration.metadata.namespace or ""
    resolved = backup_refs.resolve(ref, referenced, namespace)
    if isinstance(resolved, RestoreSource):
        return resolved
    message = {
        Unresolved.BACKUP_NOT_FOUND: (
            f"DatabaseBackup {ref.name!r} (spec.rehearsal.backupRef) was not found in namespace {namespace}; "
            "create it or fix spec.rehearsal.backupRef.name"
        ),
        Unresolved.COPY_NOT_FOUND: (
            f"DatabaseBackup {ref.name!r} has no copy {ref.copy_index} (spec.rehearsal.backupRef.copy)"
        ),
        Unresolved.WAITING_FOR_BACKUP: (
            f"DatabaseBackup {ref.name!r} has no complete backup yet to rehearse on; waiting for one"
        ),
    }[resolved]
    return Stage(MigrationPhase.PENDING, resolved.value, message)


def identity_of(migration: DatabaseMigration, referenced: DatabaseBackup | None) -> IdentitySecretRef | None:
    """The identity that opens the backup: spec.rehearsal.encryption's, else the DatabaseBackup's."""
    spec = migration.spec.rehearsal
    assert spec is not None
    if spec.encryption is not None:
        return spec.encryption.identity_secret_ref
    if spec.backup_ref is not None and referenced is not None and referenced.spec.encryption is not None:
        return referenced.spec.encryption.identity_secret_ref
    return None


def summary(rehearsal: RehearsalStatus) -> str:
    """One line: how long it took and the longest lock that blocks writes, or why it failed."""
    if rehearsal.outcome != Outcome.SUCCEEDED:
        return rehearsal.message or "the rehearsal failed"
    if not rehearsal.applied:
        return "nothing is pending, so there was nothing to rehearse"
    text = f"rehearsed {len(rehearsal.applied)} migration(s) in {rehearsal.duration_seconds or 0:g}s"
    if rehearsal.locks:
        lock = max(rehearsal.locks, key=lambda taken: taken.held_seconds)
        text += f"; longest lock: {lock.mode} on {lock.relation} held {lock.held_seconds:g}s"
    return text


def from_run(started: RehearsalStatus, run: ObservedRun, now: datetime) -> RehearsalStatus:
    """The finished rehearsal Job's report as status.rehearsal (a Job without report failed)."""
    report = report_as(run, MigrationReport)
    found = started.model_copy(deep=True)
    if report is not None and report.rehearsal is not None:
        _copy_rehearsal(report.rehearsal, found)
    found.completed_at = second(run.completed_at or now)
    if report is not None and report.outcome == Outcome.SUCCEEDED:
        found.outcome = Outcome.SUCCEEDED
        found.message = summary(found)
    else:
        found.outcome = Outcome.FAILED
        found.message = clip(report_error(report) if report is not None else failure_without_report(run))
    return found


def _copy_rehearsal(rehearsal: Rehearsal, status: RehearsalStatus) -> None:
    """The rehearsal report's fields status.rehearsal shows, under the same names (by design)."""
    copy_reported(
        rehearsal,
        status,
        (
            "backup",
            "duration_seconds",
            "restore_seconds",
            "run_seconds",
            "applied",
            "row_changes",
            "locks",
            "max_lock_hold_seconds",
            "warnings",
        ),
    )


def finished_event(old: RehearsalStatus | None, new: RehearsalStatus | None) -> Event | None:
    """The Event of a rehearsal that has just finished (once: the next decision finds it recorded)."""
    if new is None or new.outcome is None:
        return None
    if old is not None and old.job == new.job and old.outcome is not None:
        return None
    if new.outcome == Outcome.SUCCEEDED:
        return Event(NORMAL, "Rehearsed", summary(new))
    return Event(WARNING, FAILED_REASON, clip(new.message or "the rehearsal failed"))


def judge(rehearsal: RehearsalStatus, required: bool) -> Stage | None:
    """A finished rehearsal holds the run only when it failed and is required."""
    if rehearsal.outcome == Outcome.SUCCEEDED or not required:
        return None
    return Stage(
        MigrationPhase.FAILED,
        FAILED_REASON,
        clip(
            f"the rehearsal failed, so the run did not start (rehearsal.required): {rehearsal.message}; fix the "
            "migrations (or the limit) and edit the resource: its new generation is rehearsed again"
        ),
    )


def step(
    migration: DatabaseMigration,
    subject: DatabaseMigration,
    run: ObservedRun | None,
    referenced: DatabaseBackup | None,
    settings: JobSettings,
    now: datetime,
    digest: str | None = None,
) -> Rehearsed:
    """The rehearsal of the current generation: create its Job, wait for it, or record and judge it.
    `subject` is what the Job runs (for approved ConfigMaps, their files inline); `run` is its Job, if any."""
    spec = migration.spec.rehearsal
    if spec is None:
        return Rehearsed()
    old = migration.status or DatabaseMigrationStatus()
    generation = migration.metadata.generation or 1
    name = job_name(migration, digest)
    found = recorded(old, generation, digest)
    if found is not None and found.outcome is not None:
        return Rehearsed(found, judge(found, spec.required), list(old.lint))
    if run is not None:
        started = found or RehearsalStatus(generation=generation, digest=digest, job=name)
        if run.finished:
            done = from_run(started, run, now)
            report = report_as(run, MigrationReport)
            lint = list(report.lint) if report is not None and "lint" in report.model_fields_set else None
            return Rehearsed(done, judge(done, spec.required), lint)
        if run.stuck:
            return Rehearsed(started, Stage(MigrationPhase.PENDING, "JobCannotStart", cannot_start(run)))
        message = f"Job {name} is rehearsing the migration on a scratch copy restored from a backup"
        return Rehearsed(started, Stage(MigrationPhase.REHEARSING, "Rehearsing", message))
    if found is not None:  # its Job was created and is gone before it finished
        gone = found.model_copy(
            update={
                "outcome": Outcome.FAILED,
                "message": f"the rehearsal Job {name} was deleted before it finished",
                "completed_at": second(now),
            }
        )
        return Rehearsed(gone, judge(gone, spec.required))
    source = resolve_source(migration, referenced)
    if isinstance(source, Stage):
        return Rehearsed(None, source)
    job = rehearsal_job(subject, source, settings, digest, identity_of(migration, referenced))
    message = f"Job {name} created to rehearse the migration on a scratch copy restored from a backup"
    started = RehearsalStatus(generation=generation, digest=digest, job=name)
    return Rehearsed(started, Stage(MigrationPhase.REHEARSING, "RehearsalCreated", message, create=job))
