"""The plan and lint of a Manual migration before anyone approves it, when it has no spec.rehearsal.

Which files a run would apply is known only from the database's history table (and an image's files only
inside a Pod), so a read-only Job plans and lints on the live database, as the first step of a rehearsal
Job does; its findings reach status.lint and its plan status.preview while the migration awaits approval.
A preview never holds the run back: an approval given before it finishes starts the run all the same.
Pure: the caller reads the Jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgwarden.api.lint import LintFinding
from pgwarden.api.migration import Approval, DatabaseMigration, DatabaseMigrationStatus, PlanPreview
from pgwarden.api.reports import Outcome
from pgwarden.operator import naming
from pgwarden.operator.jobs import JobSettings, preview_job
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.policy import PolicyDenied
from pgwarden.operator.resources import lenient
from pgwarden.operator.status import cannot_start, clip, failure_without_report, report_error, second

Obj = dict[str, Any]


@dataclass(frozen=True)
class Previewed:
    """The preview of the current generation as status shows it, its lint, and a Job to create."""

    status: PlanPreview | None = None
    lint: list[LintFinding] | None = None
    create: Obj | None = None
    waiting: str | None = None
    """While its Job runs (or cannot start): what to add to the awaiting-approval message."""


def wanted(migration: DatabaseMigration) -> bool:
    """Only a Manual migration without a rehearsal is previewed (a rehearsal Job reads the plan itself)."""
    return migration.spec.approval == Approval.MANUAL and migration.spec.rehearsal is None


def job_name(migration: DatabaseMigration, digest: str | None) -> str:
    meta = migration.metadata
    return naming.preview_job_name(meta.name or "", meta.uid or "", meta.generation or 1, digest)


def recorded(old: DatabaseMigrationStatus, generation: int, digest: str | None) -> PlanPreview | None:
    """The preview of exactly this generation and these files, if there is one."""
    found = old.preview
    if found is None or found.generation != generation or found.digest != digest:
        return None
    return found


def summary(preview: PlanPreview, lint: list[LintFinding], fail_on: list[str]) -> str:
    """One line for the approver: what the run would apply, the findings, and what the policy refuses."""
    if preview.outcome != Outcome.SUCCEEDED:
        return preview.message or "the plan could not be read"
    if not preview.pending:
        return "nothing is pending"
    text = f"would apply {', '.join(preview.pending)}; lint: {len(lint)} finding(s)"
    refused = sorted({f.rule for f in lint if f.rule in set(fail_on)})
    if refused:
        text += f", which the run refuses (policy.lint.failOn): {', '.join(refused)}"
    return text


def from_run(started: PlanPreview, run: ObservedRun, now: datetime) -> tuple[PlanPreview, list[LintFinding]]:
    """The finished preview Job's report as status.preview and its lint (a Job without report failed)."""
    report = run.report or {}
    found = started.model_copy(update={"completed_at": second(run.completed_at or now)})
    lint = lenient(DatabaseMigrationStatus, {"lint": report.get("lint") or []}).lint
    if run.report is not None and report.get("outcome") == Outcome.SUCCEEDED:
        found.outcome, found.pending = Outcome.SUCCEEDED, list(report.get("pending") or [])
    else:
        found.outcome = Outcome.FAILED
        error = report_error(report) if run.report is not None else failure_without_report(run)
        found.message = clip(f"the plan could not be read: {error}")
    return found, lint


def step(
    migration: DatabaseMigration,
    subject: DatabaseMigration,
    run: ObservedRun | None,
    settings: JobSettings,
    now: datetime,
    digest: str | None = None,
) -> Previewed:
    """The preview of the current generation: create its Job, wait for it, or record it. `subject` is what
    the Job plans (for ConfigMaps, the files read now, inline); `run` is its Job, if any."""
    if not wanted(migration):
        return Previewed()
    old = migration.status or DatabaseMigrationStatus()
    generation = migration.metadata.generation or 1
    name = job_name(migration, digest)
    found = recorded(old, generation, digest)
    fail_on = list(migration.spec.policy.lint.fail_on)
    if found is not None and found.outcome is not None:
        return Previewed(found, list(old.lint))
    if run is not None:
        started = found or PlanPreview(generation=generation, digest=digest, job=name)
        if run.finished:
            done, lint = from_run(started, run, now)
            done.message = clip(summary(done, lint, fail_on))
            return Previewed(done, lint)
        if run.stuck:
            return Previewed(started, waiting=cannot_start(run))
        return Previewed(started, waiting=_reading(name))
    if found is not None:  # its Job was created and is gone before it finished
        gone = found.model_copy(
            update={
                "outcome": Outcome.FAILED,
                "message": f"the preview Job {name} was deleted before it finished",
                "completed_at": second(now),
            }
        )
        return Previewed(gone, [])
    try:
        job = preview_job(subject, settings, digest)
    except PolicyDenied:
        return Previewed()  # the run the approval starts is refused the same way, and says so then
    started = PlanPreview(generation=generation, digest=digest, job=name)
    return Previewed(started, create=job, waiting=_reading(name))


def _reading(job: str) -> str:
    return f"Job {job} reads the plan and lint of the pending files (read only)"
