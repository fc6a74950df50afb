"""A run whose Job died without a report (OOMKilled, past its deadline, its Pod or node gone): the operator runs
one recovery Job (`pgwarden job recover`) before it settles the resource's phase. Pure: from the dead Job and
the recovery Job (if any) to the recovery's status, phase and message.

There is never a second recovery Job for the same Job: its name is derived from the dead Job's, and once
status names it, a recovery Job that is gone is not made again. The Job waits for the database's migrator
lock, so it never runs while another run holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgwarden.api.reports import RecoveryReport, RecoveryState, RecoveryStatus
from pgwarden.operator import naming
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun
from pgwarden.operator.status import clip, failure_without_report

RECOVERING = "Recovering"
RECOVERED, RECOVERY_FAILED = "Recovered", "RecoveryFailed"
REASONS = (RECOVERING, RECOVERED, RECOVERY_FAILED)  # a recovery step's reasons: each one a Warning Event
LINES_KEPT = 10


@dataclass(frozen=True)
class Recovery:
    """Where the recovery of a dead Job stands: `phase` None while it runs (the resource stays Running)."""

    status: RecoveryStatus
    phase: str | None
    reason: str
    message: str
    current_version: str | None = None
    create: Obj | None = None


def died(run: ObservedRun) -> bool:
    """Whether the Job ended without a report and without succeeding: what it left is unknown."""
    return run.finished and run.report is None and not run.succeeded


def recovery_step(
    run: ObservedRun,
    recovery: ObservedRun | None,
    recorded: RecoveryStatus | None,
    build: Callable[[], Obj],
) -> Recovery:
    """The next step of the recovery of `run`, from its recovery Job (None: not seen) and what status recorded."""
    name = naming.recovery_job_name(run.job)
    why = failure_without_report(run)
    if recovery is None:
        if recorded is not None and recorded.job == name:  # made before, and gone since: never made again
            if recorded.state is not None:
                return _ended(recorded, why)
            gone = RecoveryStatus(job=name, state=RecoveryState.FAILED, done=[f"recovery Job {name} is gone"])
            return _ended(gone, why)
        return Recovery(
            RecoveryStatus(job=name),
            None,
            RECOVERING,
            clip(f"Job {run.job} ended without a report ({why}); recovery Job {name} settles what it left"),
            create=build(),
        )
    if not recovery.finished:
        message = (
            f"Job {run.job} ended without a report ({why}); recovery Job {name} is settling what it left"
        )
        return Recovery(RecoveryStatus(job=name), None, RECOVERING, clip(message))
    report = recovery.report
    if not isinstance(report, RecoveryReport):
        failed = RecoveryStatus(
            job=name,
            state=RecoveryState.FAILED,
            done=[f"the recovery Job failed too: {failure_without_report(recovery)}; run `pgwarden recover`"],
        )
        return _ended(failed, why)
    block = report.recovered
    status = RecoveryStatus(
        job=name,
        state=block.state,
        found=[clip(line) for line in block.found[:LINES_KEPT]],
        done=[clip(line) for line in block.done[:LINES_KEPT]],
    )
    if report.error is not None and report.error.message:
        status.done.append(clip(report.error.message))
    return _ended(status, why, report.current_version)


def _ended(status: RecoveryStatus, why: str, version: str | None = None) -> Recovery:
    """A recovery that finished: RolledBack when it undid the dead run, Failed otherwise (the run did not
    complete; the message says what the recovery found and did)."""
    undone = status.state == RecoveryState.RECOVERED and bool(status.done)
    phase = "RolledBack" if undone else "Failed"
    what = "; ".join(status.done) or "nothing was left to settle"
    # What the recovery did comes first: the dead Job's log tail in `why` can be long, and messages are clipped.
    message = (
        f"recovery Job {status.job}: {status.state}: {what}; the run's Job had ended without a report ({why})"
    )
    return Recovery(
        status,
        phase,
        RECOVERED if status.state != RecoveryState.FAILED else RECOVERY_FAILED,
        clip(message),
        version,
    )
