"""Prometheus metrics of the operator: runs by kind and outcome, durations, bytes backed up, rollbacks."""

from __future__ import annotations

import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pgwarden.api.backup import DatabaseBackupStatus
from pgwarden.api.reports import Outcome
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
LAST_VERIFIED = Gauge(
    "pgwarden_backup_last_verified_restore_timestamp_seconds",
    "Unix time a restore drill of each DatabaseBackup last succeeded (its newest backup proven to restore).",
    ["namespace", "name"],
    registry=REGISTRY,
)
SINCE_VERIFIED = Gauge(
    "pgwarden_backup_seconds_since_verified_restore",
    "Seconds since a restore drill of each DatabaseBackup last succeeded, as of the scrape; alert on it "
    "to hear of no verified restore for longer than you can accept.",
    ["namespace", "name"],
    registry=REGISTRY,
)
VERIFIED_RESTORE_SECONDS = Gauge(
    "pgwarden_backup_verified_restore_seconds",
    "How long the restore of the last successful drill took: the recovery time to plan with.",
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


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted DatabaseBackup, so /metrics does not grow with every resource ever seen."""
    for metric in (BACKUP_BYTES, LAST_BACKUP, LAST_VERIFIED, SINCE_VERIFIED, VERIFIED_RESTORE_SECONDS):
        with contextlib.suppress(KeyError):  # never recorded
            metric.remove(namespace, name)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on a port of its own (a thread of the operator's process)."""
    start_http_server(port, addr=address, registry=REGISTRY)
