"""Prometheus metrics of the operator: runs by kind and outcome, durations, bytes backed up, rollbacks."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pgwarden.operator.status import Finished

REGISTRY = CollectorRegistry(auto_describe=True)

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
LAST_BACKUP = Gauge(
    "pgwarden_backup_last_success_timestamp_seconds",
    "Unix time of the last successful backup of each DatabaseBackup.",
    ["namespace", "name"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "pgwarden_rollbacks_total",
    "Rollbacks after failed migrations, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)


def record(namespace: str, name: str, finished: Finished) -> None:
    """Count one run that just ended."""
    RUNS.labels(finished.kind, finished.outcome).inc()
    if finished.duration_seconds is not None:
        DURATION.labels(finished.kind).observe(finished.duration_seconds)
    if finished.rollback:
        ROLLBACKS.labels(finished.rollback).inc()
    if finished.kind == "backup" and finished.outcome == "Succeeded":
        if finished.size_bytes:
            BACKUP_BYTES.labels(namespace, name).inc(finished.size_bytes)
        if finished.completed_at is not None:
            LAST_BACKUP.labels(namespace, name).set(finished.completed_at.timestamp())


def observe_last_backup(namespace: str, name: str, completed_at: float | None) -> None:
    """Set the last-success gauge from status, so a restarted operator reports it too."""
    if completed_at is not None:
        LAST_BACKUP.labels(namespace, name).set(completed_at)


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted DatabaseBackup, so /metrics does not grow with every resource ever seen."""
    for metric in (BACKUP_BYTES, LAST_BACKUP):
        with contextlib.suppress(KeyError):  # never recorded
            metric.remove(namespace, name)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on a port of its own (a thread of the operator's process)."""
    start_http_server(port, addr=address, registry=REGISTRY)
