"""Decisions as values: what to create, which status to write and which Events to post, for one resource.

The per-kind modules (migrations, backups, restores) compute a `Decision` from the resource and the
observed Jobs; handlers only carry it out. Nothing here calls the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pgwarden.api.common import ResourceStatus
from pgwarden.api.drill import DrillReport
from pgwarden.api.job_report import REPORT_MODELS, BackupJobReport, JobReport, decode_report
from pgwarden.api.reports import Difference, MigrationReport, RestoreComparison, RestoreReport
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun

S = TypeVar("S", bound=ResourceStatus)
R = TypeVar("R", MigrationReport, BackupJobReport, RestoreReport, DrillReport)
REPORT_KINDS = {model: kind for kind, model in REPORT_MODELS.items()}

NORMAL = "Normal"
WARNING = "Warning"


class RunPhase(StrEnum):
    """The phases every kind that runs Jobs shares; each kind's own enum (MigrationPhase, RestorePhase,
    BackupPhase) has the same values for them."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    CANCELLED = "Cancelled"


# As plain values, so that each kind's phase enum is found in it.
TERMINAL_PHASES: frozenset[str] = frozenset(
    phase.value for phase in (RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.ROLLED_BACK, RunPhase.CANCELLED)
)
CANCELLED: str = RunPhase.CANCELLED.value
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the resource."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Finished:
    """A run that just ended, for the metrics."""

    kind: str
    outcome: str
    duration_seconds: float | None = None
    size_bytes: int | None = None
    rollback: str | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Decision(Generic[S]):
    """What the operator does for a resource now; carrying it out twice does no harm. `status` is the
    kind's status model, serialised once, where it is patched (`ResourceStatus.to_status`)."""

    status: S
    events: tuple[Event, ...] = ()
    create: Obj | None = None
    delete_cronjob: str | None = None
    finished: tuple[Finished, ...] = ()
    # When the resource needs a look although no event may come (a backup turning stale, a schedule due).
    deadline: datetime | None = None
    # CronJobs besides the one `create` names (a DatabaseBackup's restore drills'): to create or replace,
    # and names of ones to delete.
    apply_cronjobs: tuple[Obj, ...] = ()
    delete_cronjobs: tuple[str, ...] = ()


def outcome_event(ok: bool, what: str, message: str | None) -> Event:
    """`<what>Succeeded` (Normal) or `<what>Failed` (Warning), saying the run's message."""
    return Event(NORMAL if ok else WARNING, f"{what}Succeeded" if ok else f"{what}Failed", message or "")


def status_patch(old: Obj, new: Obj) -> Obj:
    """A merge patch turning `old` into `new`: removed fields become null, unchanged ones are left out."""
    patch: Obj = {key: None for key in old if key not in new}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    return patch


def clip(text: str | None, limit: int = MESSAGE_LIMIT) -> str:
    """One line, at most `limit` characters: status messages show up in `kubectl get -o wide`."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


DEADLINE_EXCEEDED = (
    "the Job ran longer than its activeDeadlineSeconds (spec.jobTemplate.activeDeadlineSeconds, else "
    "the operator's default, chart value jobActiveDeadlineSeconds) and was stopped"
)


def failure_without_report(run: ObservedRun) -> str:
    """Why a Job failed when its pod left no report: the deadline, the retry limit, or the log tail."""
    if run.failure_reason == "DeadlineExceeded":
        detail = DEADLINE_EXCEEDED
    elif run.failure_reason == "BackoffLimitExceeded":
        detail = "the Job's pod failed without a report"
    elif run.failure_reason:
        detail = f"the Job failed ({run.failure_reason}: {run.failure_message or 'no message'})"
    else:
        detail = "the Job failed without a report"
    if run.exit_code is not None:
        killed = (
            f"{run.termination_reason}, "
            if run.termination_reason not in (None, "Error", "Completed")
            else ""
        )
        detail += f" ({killed}exit code {run.exit_code})"
    if run.termination_text:
        detail += f"; last output: {run.termination_text}"
    return clip(detail)


def with_stop_reason(message: str, run: ObservedRun) -> str:
    """A report's message plus what the report cannot know: that Kubernetes stopped the run at its deadline
    (the pod's SIGTERM handler wrote the report, saying only that it was terminated)."""
    if run.failure_reason == "DeadlineExceeded" and DEADLINE_EXCEEDED not in message:
        return clip(f"{message}; {DEADLINE_EXCEEDED}")
    return message


def succeeded_without_report(run: ObservedRun) -> str:
    """A Job that completed (its pod exited 0, which `pgwarden job` does only on success) but whose pod,
    and with it the report, is gone: the run succeeded, only its details are lost."""
    return clip(
        f"Job {run.job} completed successfully, but its pod is gone (deleted or garbage-collected), so the "
        "report with its details could not be read"
    )


def cancelled(job: str, what: str) -> str:
    """Why a run that was started is over without a result: its Job was deleted."""
    return clip(
        f"Job {job} was deleted before it finished, which cancels the {what}; it is not started again. "
        "What it did before it stopped is not known here"
    )


def cannot_start(run: ObservedRun) -> str:
    assert run.stuck is not None
    return clip(
        f"Job {run.job} cannot start its pod ({run.stuck.reason}): {run.stuck.message}; "
        "fix it and the pod starts by itself"
    )


def report_error(report: JobReport) -> str:
    """Why the run failed, as its report says (naming the migration that failed, when one did)."""
    error = report.error
    if error is None:
        return ""
    if error.migration and error.migration not in error.message:
        return f"migration {error.migration}: {error.message}"
    return error.message


def report_as(run: ObservedRun, model: type[R]) -> R | None:
    """The run's report as the model a kind's runs write. A Job without pgwarden's labels was read by its
    report's shape, which a short failure report shares with every kind: then it is read again as `model`."""
    if run.report is None or isinstance(run.report, model):
        return run.report
    decoded = decode_report(run.report.to_json_dict(), REPORT_KINDS[model])
    found = decoded.report if decoded is not None else None
    return found if isinstance(found, model) else None


def without_report(run: ObservedRun, doing: str) -> tuple[RunPhase, str, str]:
    """(phase, reason, message) of a run whose Job left no report: done, failed, stuck, or still `doing`."""
    if run.succeeded:
        return RunPhase.SUCCEEDED, "Succeeded", succeeded_without_report(run)
    if run.finished:
        return RunPhase.FAILED, run.failure_reason or "JobFailed", failure_without_report(run)
    if run.stuck:
        return RunPhase.PENDING, "JobCannotStart", cannot_start(run)
    return RunPhase.RUNNING, "Running", f"Job {run.job} is {doing}"


def table_differences(verification: RestoreComparison) -> list[Difference]:
    """The tables whose restored rows differ from the backup's, as status lists differences."""
    return [
        Difference(
            kind="table",
            object=item.table,
            detail=item.detail or f"expected {item.expected} rows, found {item.actual}",
        )
        for item in verification.differences
    ]


def started(run: ObservedRun) -> datetime | None:
    return run.started_at or run.created_at


def transitioned(old: Any, new: Any) -> bool:
    """True when the run or its phase changed, so the Event and metrics of a transition are emitted once."""
    return bool(old.job != new.job or old.phase != new.phase)


def second(moment: datetime) -> datetime:
    """A time as status records it: to the second."""
    return moment.replace(microsecond=0)
