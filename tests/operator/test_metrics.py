"""What /metrics says of each resource, of running Jobs and of the leader: the series the chart's alert rules
and dashboard read (tests/monitoring proves those rules with promtool and a real Prometheus)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pgwarden.api.backup import DatabaseBackupStatus
from pgwarden.api.migration import DatabaseMigrationStatus
from pgwarden.api.restore import DatabaseRestoreStatus
from pgwarden.operator import metrics
from pgwarden.operator.resource_metrics import count_running

Obj = dict[str, Any]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def sample(metric: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


def test_a_rolled_back_migration_shows_its_phase_its_drift_and_a_failed_last_run(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-fails.yaml", "DatabaseMigration")
    status = DatabaseMigrationStatus.model_validate(
        {
            "phase": "RolledBack",
            "durationSeconds": 2.5,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "RolledBack",
                    "message": "m",
                    "lastTransitionTime": "2025-03-01T11:00:00Z",
                },
                {
                    "type": "Drifted",
                    "status": "True",
                    "reason": "DriftDetected",
                    "message": "d",
                    "lastTransitionTime": "2025-03-01T11:00:00Z",
                },
            ],
        }
    )
    metrics.observe(body, status, NOW)
    who = {"namespace": "shop", "name": "inventory"}
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="RolledBack", **who) == 1
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="Succeeded", **who) is None
    drifted = {"condition": "Drifted", "status": "True"}
    assert sample("pgwarden_resource_condition", kind="DatabaseMigration", **drifted, **who) == 1
    assert sample("pgwarden_last_run_succeeded", kind="migrate", **who) == 0
    assert sample("pgwarden_last_run_duration_seconds", kind="migrate", **who) == 2.5

    # The next generation succeeds: the old phase's series goes, the new one is there.
    metrics.observe(body, status.model_copy(update={"phase": "Succeeded", "conditions": []}), NOW)
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="RolledBack", **who) is None
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="Succeeded", **who) == 1
    assert sample("pgwarden_last_run_succeeded", kind="migrate", **who) == 1
    metrics.forget("DatabaseMigration", "shop", "inventory")
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="Succeeded", **who) is None


def test_a_running_migration_has_a_phase_but_no_last_run_yet(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    metrics.observe(body, DatabaseMigrationStatus(phase="Running"), NOW)
    who = {"namespace": "shop", "name": "shop"}
    assert sample("pgwarden_resource_phase", kind="DatabaseMigration", phase="Running", **who) == 1
    assert sample("pgwarden_last_run_succeeded", kind="migrate", **who) is None
    metrics.forget("DatabaseMigration", "shop", "shop")


def test_a_scheduled_backup_reports_its_limits_size_last_backup_and_failed_drill(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["verify"] = {"schedule": "0 3 * * 0"}  # weekly drills, no verify.staleAfter
    status = DatabaseBackupStatus.model_validate(
        {
            "phase": "Scheduled",
            "lastSuccessfulTime": "2025-03-01T02:00:03Z",
            "lastBackup": {"id": "b", "location": "l", "sizeBytes": 3140},
            "history": [
                {"job": "new", "outcome": "Failed", "durationSeconds": 4.0},
                {"job": "old", "outcome": "Succeeded", "durationSeconds": 1.5},
            ],
            "lastVerifiedBackup": {"outcome": "Failed", "durationSeconds": 7.25, "job": "drill"},
        }
    )
    metrics.observe(body, status, NOW)
    who = {"namespace": "shop", "name": "shop-nightly"}
    assert sample("pgwarden_backup_stale_after_seconds", **who) == 26 * 3600  # spec.staleAfter: 26h
    assert sample("pgwarden_backup_verify_stale_after_seconds", **who) == 2 * 7 * 86400  # twice a week
    assert sample("pgwarden_backup_size_bytes", **who) == 3140
    assert (
        sample("pgwarden_backup_last_success_timestamp_seconds", **who)
        == datetime(2025, 3, 1, 2, 0, 3, tzinfo=UTC).timestamp()
    )
    assert sample("pgwarden_last_run_succeeded", kind="backup", **who) == 0  # the newest run failed
    assert sample("pgwarden_last_run_duration_seconds", kind="backup", **who) == 4.0
    assert sample("pgwarden_last_run_succeeded", kind="drill", **who) == 0
    assert sample("pgwarden_last_run_duration_seconds", kind="drill", **who) == 7.25
    assert sample("pgwarden_resource_phase", kind="DatabaseBackup", phase="Scheduled", **who) == 1
    created = datetime(2025, 3, 1, 11, 0, tzinfo=UTC).timestamp()  # the test resource's creationTimestamp
    assert sample("pgwarden_resource_created_timestamp_seconds", kind="DatabaseBackup", **who) == created

    metrics.forget("DatabaseBackup", "shop", "shop-nightly")
    for name in ("pgwarden_backup_stale_after_seconds", "pgwarden_backup_last_success_timestamp_seconds"):
        assert sample(name, **who) is None


def test_the_limits_are_read_again_for_a_new_generation(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    assert metrics.backup_limits(body, NOW).stale_after_seconds == 26 * 3600
    body["spec"]["staleAfter"] = "2d"  # the same generation: its limits are not read again
    assert metrics.backup_limits(body, NOW).stale_after_seconds == 26 * 3600
    body["metadata"]["generation"] = 2
    assert metrics.backup_limits(body, NOW).stale_after_seconds == 2 * 86400
    del body["spec"]["staleAfter"]
    body["metadata"]["generation"] = 3
    assert metrics.backup_limits(body, NOW).stale_after_seconds == 2 * 86400  # twice daily at 02:00
    body["spec"]["schedule"] = "every night"  # refused by the models: no limits, no exception
    body["metadata"]["generation"] = 4
    assert metrics.backup_limits(body, NOW).stale_after_seconds is None
    metrics.forget("DatabaseBackup", "shop", "shop-nightly")


def test_a_one_time_backup_without_stale_after_has_no_limit(resource: Callable[..., Obj]) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"].pop("staleAfter", None)
    metrics.observe(body, DatabaseBackupStatus(phase="Succeeded"), NOW)
    name = body["metadata"]["name"]
    assert sample("pgwarden_backup_stale_after_seconds", namespace="shop", name=name) is None
    assert sample(
        "pgwarden_resource_phase", kind="DatabaseBackup", phase="Succeeded", namespace="shop", name=name
    )
    metrics.forget("DatabaseBackup", "shop", name)


def test_a_finished_restore_reports_its_outcome_and_duration(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    status = DatabaseRestoreStatus.model_validate({"phase": "Failed", "durationSeconds": 3.0})
    metrics.observe(body, status, NOW)
    who = {"namespace": "shop", "name": body["metadata"]["name"]}
    assert sample("pgwarden_last_run_succeeded", kind="restore", **who) == 0
    assert sample("pgwarden_last_run_duration_seconds", kind="restore", **who) == 3.0
    metrics.forget("DatabaseRestore", "shop", who["name"])


def job(kind: str, namespace: str, active: int, task: str | None = None) -> Obj:
    labels = {"app.kubernetes.io/component": kind}
    if task:
        labels["pgwarden.io/task"] = task
    return {
        "metadata": {"namespace": namespace, "labels": labels},
        "status": {"active": active} if active else {},
    }


def test_running_jobs_are_counted_by_kind_and_namespace_and_finished_kinds_count_zero() -> None:
    jobs = [
        job("backup", "shop", 1),
        job("backup", "shop", 0),
        job("backup", "shop", 1, task="drill"),
        job("migrate", "shop", 0),
        job("restore", "crm", 1),
    ]
    assert count_running(jobs) == {
        ("backup", "shop"): 1,
        ("drill", "shop"): 1,
        ("migrate", "shop"): 0,
        ("restore", "crm"): 1,
    }


def test_the_running_jobs_gauge_reads_the_watch_when_scraped() -> None:
    index: dict[str, list[Obj]] = {"uid-1": [job("migrate", "shop", 1)]}
    metrics.count_running_jobs(index)
    metrics.count_running_jobs({})  # a second call keeps the first watch
    assert sample("pgwarden_jobs_running", kind="migrate", namespace="shop") == 1
    index["uid-1"] = [job("migrate", "shop", 0)]
    assert sample("pgwarden_jobs_running", kind="migrate", namespace="shop") == 0


def test_the_leader_gauge_asks_the_elector_when_scraped() -> None:
    leading = [False]
    metrics.leading(lambda: leading[0])
    assert sample("pgwarden_operator_leader") == 0
    leading[0] = True
    assert sample("pgwarden_operator_leader") == 1


def test_every_kind_and_outcome_of_runs_starts_at_zero_so_the_first_failure_counts_in_increase() -> None:
    for kind, outcome in (("migrate", "RolledBack"), ("backup", "Failed"), ("drill", "Failed")):
        assert sample("pgwarden_runs_total", kind=kind, outcome=outcome) is not None


def test_the_process_is_described_for_the_operators_health() -> None:
    assert (sample("process_resident_memory_bytes") or 0) > 0
