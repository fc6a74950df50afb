"""Prometheus metrics of the operator: runs by kind and outcome, durations, bytes backed up, rollbacks, each
resource's phase, conditions and last runs (resource_metrics), running Jobs, the leader and the process.

The chart's alert rules and dashboard are written against these names; tests/monitoring proves them with
promtool and a real Prometheus."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from pydantic import ValidationError

from pgwarden.api.backup import DatabaseBackup, DatabaseBackupStatus
from pgwarden.api.common import ResourceStatus
from pgwarden.api.reports import Outcome
from pgwarden.operator import backups, drills
from pgwarden.operator.observe import parse_time
from pgwarden.operator.resource_metrics import Limits, ResourceSeries, RunningJobs, state_of
from pgwarden.operator.resources import typed
from pgwarden.operator.status import Finished

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
PlatformCollector(registry=REGISTRY)
RESOURCES = ResourceSeries()
REGISTRY.register(RESOURCES)


def _resource_gauge(name: str, documentation: str) -> Gauge:
    """A gauge with one series per resource (labelled namespace and name), in the operator's registry."""
    return Gauge(name, documentation, ["namespace", "name"], registry=REGISTRY)


RUNS = Counter(
    "pgwarden_runs_total", "Finished Job runs by kind and outcome.", ["kind", "outcome"], registry=REGISTRY
)
DURATION = Histogram(
    "pgwarden_run_duration_seconds",
    "How long runs took, by kind.",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)
BACKUP_BYTES = Counter(
    "pgwarden_backup_bytes_total",
    "Bytes written by successful backups.",
    ["namespace", "name"],
    registry=REGISTRY,
)
LAST_BACKUP = _resource_gauge(
    "pgwarden_backup_last_success_timestamp_seconds",
    "Unix time of the last successful backup of each DatabaseBackup.",
)
LAST_VERIFIED = _resource_gauge(
    "pgwarden_backup_last_verified_restore_timestamp_seconds",
    "Unix time a restore drill of each DatabaseBackup last succeeded (its newest backup proven to restore).",
)
SINCE_VERIFIED = _resource_gauge(
    "pgwarden_backup_seconds_since_verified_restore",
    "Seconds since a restore drill of each DatabaseBackup last succeeded, as of the scrape; alert on it "
    "to hear of no verified restore for longer than you can accept.",
)
VERIFIED_RESTORE_SECONDS = _resource_gauge(
    "pgwarden_backup_verified_restore_seconds",
    "How long the restore of the last successful drill took: the recovery time to plan with.",
)
# Every kind and outcome starts at 0, so the first failure after a start counts in increase() (a series that
# appears at 1 would not).
for _kind, _outcomes in {
    "migrate": ("Succeeded", "Failed", "RolledBack", "Cancelled"),
    "backup": ("Succeeded", "Failed"),
    "drill": ("Succeeded", "Failed"),
    "restore": ("Succeeded", "Failed", "Cancelled"),
}.items():
    for _outcome in _outcomes:
        RUNS.labels(_kind, _outcome)
ROLLBACKS = Counter(
    "pgwarden_rollbacks_total",
    "Rollbacks after failed migrations, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
SET_TARGETS = Gauge(
    "pgwarden_set_targets",
    "Targets of each DatabaseMigrationSet and DatabaseBackupSet by state (total, succeeded, failed, running, "
    "pending, skipped for migrations; total, backedUp, stale, unverified, failed, pending for backups).",
    ["namespace", "name", "kind", "state"],
    registry=REGISTRY,
)
SET_STATES = (
    "total",
    "succeeded",
    "failed",
    "running",
    "pending",
    "skipped",
    "backedUp",
    "stale",
    "unverified",
)
SET_HALTED = _resource_gauge(
    "pgwarden_set_halted",
    "1 while a DatabaseMigrationSet is halted (a canary failed, or maxFailures targets did), else 0.",
)
SET_DRIFTED = _resource_gauge(
    "pgwarden_set_drifted_targets",
    "Targets of a DatabaseMigrationSet whose schema drifted, as its last drift checks found (spec.drift).",
)
LEADER = Gauge(
    "pgwarden_operator_leader",
    "1 while this replica holds the leader Lease and acts; 0 while it stands by.",
    registry=REGISTRY,
)
# A DatabaseBackup's limits by (namespace, name) for its uid and generation: its spec read once per generation.
_limits: dict[tuple[str, str], tuple[tuple[str, int], Limits]] = {}


def record(namespace: str, name: str, finished: Finished) -> None:
    """Count one run that just ended."""
    RUNS.labels(finished.kind, finished.outcome).inc()
    if finished.duration_seconds is not None:
        DURATION.labels(finished.kind).observe(finished.duration_seconds)
    if finished.rollback:
        ROLLBACKS.labels(finished.rollback).inc()
    if finished.kind == "backup" and finished.outcome == Outcome.SUCCEEDED:
        if finished.size_bytes:
            BACKUP_BYTES.labels(namespace, name).inc(finished.size_bytes)
        if finished.completed_at is not None:
            LAST_BACKUP.labels(namespace, name).set(finished.completed_at.timestamp())


def observe_last_backup(namespace: str, name: str, completed_at: float | None) -> None:
    """Set the last-success gauge from status, so a restarted operator reports it too."""
    if completed_at is not None:
        LAST_BACKUP.labels(namespace, name).set(completed_at)


def observe_verified(namespace: str, name: str, status: DatabaseBackupStatus) -> None:
    """Set the verified-restore gauges from status (so a restarted operator reports them too); the age is
    computed when scraped, so it grows between reconciles."""
    verified = status.last_verified_time
    if verified is None:
        return
    stamp = verified.timestamp()
    LAST_VERIFIED.labels(namespace, name).set(stamp)
    SINCE_VERIFIED.labels(namespace, name).set_function(lambda: max(time.time() - stamp, 0.0))
    last = status.last_verified_backup
    if last is not None and last.outcome == Outcome.SUCCEEDED and last.restore_seconds is not None:
        VERIFIED_RESTORE_SECONDS.labels(namespace, name).set(last.restore_seconds)


def observe(body: Mapping[str, Any], status: ResourceStatus, now: datetime) -> None:
    """Keep what /metrics says of a resource in step with the status its reconcile just decided."""
    meta = body.get("metadata") or {}
    kind, namespace, name = str(body.get("kind")), str(meta.get("namespace")), str(meta.get("name"))
    limits = Limits()
    if isinstance(status, DatabaseBackupStatus):
        last = status.last_successful_time
        observe_last_backup(namespace, name, last.timestamp() if last else None)
        observe_verified(namespace, name, status)
        limits = backup_limits(body, now)
    created = parse_time(meta.get("creationTimestamp"))
    state = state_of(kind, status, limits, created.timestamp() if created else None)
    RESOURCES.set((kind, namespace, name), state)


def backup_limits(body: Mapping[str, Any], now: datetime) -> Limits:
    """How old a DatabaseBackup's backups and verified restores may get, as its Stale condition judges;
    worked out once per generation (a spec the models refuse has none)."""
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    version = (str(meta.get("uid")), int(meta.get("generation") or 0))
    cached = _limits.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        backup = typed(DatabaseBackup, dict(body))
    except ValidationError:
        return Limits()
    stale, verify_stale = backups.stale_after(backup, now), drills.stale_after(backup, now)
    limits = Limits(
        stale.total_seconds() if stale is not None else None,
        verify_stale.total_seconds() if verify_stale is not None else None,
    )
    _limits[key] = (version, limits)
    return limits


def count_running_jobs(index: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
    """Serve `pgwarden_jobs_running` from the operator's watch of its Jobs (once, when it is first there)."""
    if not _running:  # one watch per process
        _running.append(RunningJobs(index))
        REGISTRY.register(_running[0])


_running: list[RunningJobs] = []


def leading(is_leader: Callable[[], bool]) -> None:
    """Report whether this replica acts, asked when scraped."""
    LEADER.set_function(lambda: 1.0 if is_leader() else 0.0)


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop the series of a deleted resource, so /metrics does not grow with every resource ever seen."""
    RESOURCES.forget((kind, namespace, name))
    if kind != "DatabaseBackup":
        return
    _limits.pop((namespace, name), None)
    for metric in (BACKUP_BYTES, LAST_BACKUP, LAST_VERIFIED, SINCE_VERIFIED, VERIFIED_RESTORE_SECONDS):
        with contextlib.suppress(KeyError):  # never recorded
            metric.remove(namespace, name)


def observe_set(namespace: str, name: str, kind: str, counts: dict[str, int], halted: bool | None) -> None:
    """Set a set's gauges from its status (`halted` None: a kind that never halts)."""
    for state, value in counts.items():
        SET_TARGETS.labels(namespace, name, kind, state).set(value)
    if halted is not None:
        SET_HALTED.labels(namespace, name).set(1 if halted else 0)


def observe_drift(namespace: str, name: str, drifted: int | None) -> None:
    """A migration set's drifted targets; None (no check has finished, or none is asked for): no series."""
    if drifted is None:
        with contextlib.suppress(KeyError):
            SET_DRIFTED.remove(namespace, name)
    else:
        SET_DRIFTED.labels(namespace, name).set(drifted)


def forget_set(namespace: str, name: str, kind: str) -> None:
    """Drop a deleted set's series."""
    for state in SET_STATES:
        with contextlib.suppress(KeyError):  # a state this kind does not have
            SET_TARGETS.remove(namespace, name, kind, state)
    for metric in (SET_HALTED, SET_DRIFTED):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on a port of its own (a thread of the operator's process)."""
    start_http_server(port, addr=address, registry=REGISTRY)
