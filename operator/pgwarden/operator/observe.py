"""What a Job and its Pods say about a run, read from their API objects: pure, so every case is a unit test.

The report the Job left in its termination message is decoded here, once, into its `pgwarden.api` model;
everything after reads the model (a Job's labels say which report it writes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pgwarden.api.job_report import DecodedReport, JobReport, ReportNotes, decode_report
from pgwarden.api.objects import parse_time as parse_time  # where the operator's modules take it from
from pgwarden.api.task import JobKind
from pgwarden.operator import naming
from pgwarden.operator.jobs import CONTAINER, TASK_LABEL
from pgwarden.operator.objects import Obj

# Waiting reasons after which a container will not start by itself: the user has to fix something.
STUCK_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Stuck:
    """A pod that cannot start, and why, in the kubelet's words."""

    reason: str
    message: str


@dataclass(frozen=True)
class ObservedRun:
    """One Job of a resource as the operator sees it."""

    job: str
    generation: int | None = None
    active: bool = True
    succeeded: bool = False
    failed: bool = False
    failure_reason: str | None = None
    failure_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    report: JobReport | None = None
    report_notes: ReportNotes | None = None  # what decoding the report set aside (capped lists' totals, …)
    termination_text: str | None = None
    exit_code: int | None = None
    termination_reason: str | None = None  # the kubelet's word for how the container ended, e.g. OOMKilled
    stuck: Stuck | None = None
    created_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


def _condition(job: Obj, kind: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def parse_termination_message(
    text: str | None, kind: JobKind | None
) -> tuple[DecodedReport | None, str | None]:
    """(report, text): the compact JSON report `pgwarden job` wrote, decoded as a Job of `kind` writes it, or
    the raw text (log tail) when it is no report."""
    if not text or not text.strip():
        return None, None
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except ValueError:
        return None, stripped
    decoded = decode_report(data, kind) if isinstance(data, dict) and "outcome" in data else None
    return (decoded, None) if decoded is not None else (None, stripped)


def job_kind(job: Obj) -> JobKind | None:
    """What a Job does, from the labels the operator gave it (None for a Job without them)."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    task = labels.get(TASK_LABEL)  # a Job of another kind than its resource's: drill, drift, recover
    if task in {str(kind) for kind in JobKind}:
        return JobKind(task)
    component = labels.get(naming.LABEL_COMPONENT)
    return next((kind for kind in JobKind if kind.value == component), None)


def _container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def stuck_pod(pods: list[Obj]) -> Stuck | None:
    """The first container waiting for something only the user can fix (a Secret, an image)."""
    for pod in pods:
        pod_phase = (pod.get("status") or {}).get("phase")  # Kubernetes' own Pod phases
        if pod_phase in ("Succeeded", "Failed"):
            continue
        for status in _container_statuses(pod):
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                message = waiting.get("message") or waiting["reason"]
                return Stuck(str(waiting["reason"]), f"container {status.get('name')}: {message}")
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return Stuck("Unschedulable", str(condition.get("message") or "no node fits the pod"))
    return None


def _terminated(pods: list[Obj]) -> Obj | None:
    """The runner container's terminated state, newest pod first."""
    ordered = sorted(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True
    )
    for pod in ordered:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == CONTAINER:
                terminated = (status.get("state") or {}).get("terminated")
                if terminated:
                    return dict(terminated)
    return None


def observe(job: Obj, pods: list[Obj]) -> ObservedRun:
    """A run from its Job and that Job's Pods."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    terminated = _terminated(pods)
    decoded, text = parse_termination_message(
        terminated.get("message") if terminated else None, job_kind(job)
    )
    generation = (meta.get("labels") or {}).get("pgwarden.io/generation")
    return ObservedRun(
        job=str(meta.get("name")),
        generation=int(generation) if generation and generation.isdigit() else None,
        active=not (complete or failed),
        succeeded=complete is not None,
        failed=failed is not None,
        failure_reason=failed.get("reason") if failed else None,
        failure_message=failed.get("message") if failed else None,
        started_at=parse_time(status.get("startTime")),
        completed_at=parse_time(status.get("completionTime"))
        or parse_time((failed or {}).get("lastTransitionTime")),
        report=decoded.report if decoded else None,
        report_notes=decoded.notes if decoded else None,
        termination_text=text,
        exit_code=terminated.get("exitCode") if terminated else None,
        termination_reason=terminated.get("reason") if terminated else None,
        stuck=None if (complete or failed) else stuck_pod(pods),
        created_at=parse_time(meta.get("creationTimestamp")),
    )
