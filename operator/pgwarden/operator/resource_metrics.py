"""The per-resource series of /metrics, made when scraped from what each resource's last reconcile decided.

A reconcile stores one small frozen value per resource (its phase, conditions, last runs and, for a
DatabaseBackup, how old its backups may get); the scrape turns them into series. Between scrapes a busy
operator pays nothing, and a restarted one reports everything again from status on its first reconcile.
The state is pure (`state_of`); only `ResourceSeries` and `RunningJobs` are prometheus_client collectors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgwarden.api.backup import DatabaseBackupStatus
from pgwarden.api.common import ResourceStatus, RunStatus
from pgwarden.operator import naming
from pgwarden.operator.jobs import TASK_LABEL
from pgwarden.operator.status import TERMINAL_PHASES

Key = tuple[str, str, str]  # kind, namespace, name
RUN_KINDS = {"DatabaseMigration": "migrate", "DatabaseBackup": "backup", "DatabaseRestore": "restore"}


@dataclass(frozen=True)
class LastRun:
    """The newest finished run of one kind (migrate, backup, drill, restore): did it succeed, how long."""

    kind: str
    succeeded: bool
    duration_seconds: float | None


@dataclass(frozen=True)
class Limits:
    """How old a DatabaseBackup's last success and last verified restore may get (None: no limit)."""

    stale_after_seconds: float | None = None
    verify_stale_after_seconds: float | None = None


@dataclass(frozen=True)
class ResourceState:
    """What /metrics says of one resource."""

    phase: str | None
    conditions: tuple[tuple[str, str], ...] = ()
    runs: tuple[LastRun, ...] = ()
    limits: Limits = Limits()
    size_bytes: int | None = None
    created: float | None = None


def state_of(
    kind: str, status: ResourceStatus, limits: Limits = Limits(), created: float | None = None
) -> ResourceState:
    """The state a status shows: its phase and conditions, its newest finished runs, the backup's size."""
    phase = getattr(status, "phase", None)
    conditions = tuple((c.type, str(c.status)) for c in status.conditions)
    runs: list[LastRun] = []
    size = None
    if isinstance(status, DatabaseBackupStatus):
        newest = next((run for run in status.history if run.outcome is not None), None)  # newest first
        if newest is not None and newest.outcome is not None:
            runs.append(LastRun("backup", newest.outcome == "Succeeded", newest.duration_seconds))
        drill = status.last_verified_backup
        if drill is not None:
            runs.append(LastRun("drill", drill.outcome == "Succeeded", drill.duration_seconds))
        size = status.last_backup.size_bytes if status.last_backup else None
    elif isinstance(status, RunStatus) and phase in TERMINAL_PHASES:
        runs.append(LastRun(RUN_KINDS[kind], phase == "Succeeded", status.duration_seconds))
    return ResourceState(
        phase=str(phase) if phase else None,
        conditions=conditions,
        runs=tuple(runs),
        limits=limits,
        size_bytes=size,
        created=created,
    )


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class ResourceSeries(Collector):
    """The states of every resource the operator reconciled, as series when scraped."""

    def __init__(self) -> None:
        self._states: dict[Key, ResourceState] = {}
        self._guard = threading.Lock()

    def set(self, key: Key, state: ResourceState) -> None:
        with self._guard:
            self._states[key] = state

    def forget(self, key: Key) -> None:
        with self._guard:
            self._states.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        with self._guard:
            states = list(self._states.items())
        phase = _gauge(
            "pgwarden_resource_phase",
            "1 for each resource's current phase (status.phase), by kind.",
            ["kind", "namespace", "name", "phase"],
        )
        condition = _gauge(
            "pgwarden_resource_condition",
            "1 for each condition of each resource with its status (True, False, Unknown): Ready, Stale, "
            "Verified, Drifted, ...",
            ["kind", "namespace", "name", "condition", "status"],
        )
        succeeded = _gauge(
            "pgwarden_last_run_succeeded",
            "Whether the newest finished run of each kind (migrate, backup, drill, restore) of a resource "
            "succeeded: 1, or not: 0 (failed, rolled back, cancelled).",
            ["kind", "namespace", "name"],
        )
        duration = _gauge(
            "pgwarden_last_run_duration_seconds",
            "How long the newest finished run of each kind of a resource took.",
            ["kind", "namespace", "name"],
        )
        stale = _gauge(
            "pgwarden_backup_stale_after_seconds",
            "How old the last successful backup of a DatabaseBackup may get: spec.staleAfter, else twice "
            "the schedule's interval (no series for a one-time backup without staleAfter).",
            ["namespace", "name"],
        )
        verify_stale = _gauge(
            "pgwarden_backup_verify_stale_after_seconds",
            "How old the last verified restore (drill) of a DatabaseBackup may get: verify.staleAfter, else "
            "twice the drills' interval (no series without drills).",
            ["namespace", "name"],
        )
        size = _gauge(
            "pgwarden_backup_size_bytes",
            "Size of the newest complete backup of each DatabaseBackup as stored (compressed).",
            ["namespace", "name"],
        )
        created = _gauge(
            "pgwarden_resource_created_timestamp_seconds",
            "Unix time each resource was created (what an age counts from while it has no result yet).",
            ["kind", "namespace", "name"],
        )
        for (kind, namespace, name), state in states:
            if state.created is not None:
                created.add_metric([kind, namespace, name], state.created)
            if state.phase:
                phase.add_metric([kind, namespace, name, state.phase], 1)
            for type_, status in state.conditions:
                condition.add_metric([kind, namespace, name, type_, status], 1)
            for run in state.runs:
                succeeded.add_metric([run.kind, namespace, name], 1 if run.succeeded else 0)
                if run.duration_seconds is not None:
                    duration.add_metric([run.kind, namespace, name], run.duration_seconds)
            if state.limits.stale_after_seconds is not None:
                stale.add_metric([namespace, name], state.limits.stale_after_seconds)
            if state.limits.verify_stale_after_seconds is not None:
                verify_stale.add_metric([namespace, name], state.limits.verify_stale_after_seconds)
            if state.size_bytes is not None:
                size.add_metric([namespace, name], state.size_bytes)
        yield from (created, phase, condition, succeeded, duration, stale, verify_stale, size)


def job_kind(job: Mapping[str, Any]) -> str:
    """What a Job runs: its task label (drill), else its component (migrate, backup, restore)."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    return str(labels.get(TASK_LABEL) or labels.get(naming.LABEL_COMPONENT) or "unknown")


def count_running(jobs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """Running Jobs (an active Pod) by (kind, namespace); 0 for a kind and namespace whose Jobs all ended,
    so a panel or an alert sees "none running" rather than no data."""
    counts: dict[tuple[str, str], int] = {}
    for job in jobs:
        key = (job_kind(job), str((job.get("metadata") or {}).get("namespace") or ""))
        counts[key] = counts.get(key, 0) + (1 if (job.get("status") or {}).get("active") else 0)
    return counts


class RunningJobs(Collector):
    """`pgwarden_jobs_running`, counted when scraped from the operator's watch of its Jobs (a kopf index:
    resource uid to that resource's Jobs)."""

    def __init__(self, index: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        self._index = index

    def collect(self) -> Iterator[Metric]:
        # list() copies each container in one step under the GIL, while kopf's loop may be changing it.
        jobs = [job for _uid, stored in list(self._index.items()) for job in list(stored)]
        running = _gauge(
            "pgwarden_jobs_running",
            "Jobs running now (an active Pod), by kind (migrate, backup, drill, restore) and namespace.",
            ["kind", "namespace"],
        )
        for (kind, namespace), count in sorted(count_running(jobs).items()):
            running.add_metric([kind, namespace], count)
        yield running
