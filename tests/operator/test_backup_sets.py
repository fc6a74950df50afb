"""DatabaseBackupSet decisions: one DatabaseBackup per target, staggered schedules, the counts of their backups."""

from __future__ import annotations

from typing import Any

from set_support import NOW, Fleet, backup_set, typed_backup_set

from pgwarden.api.sets import SET_LABEL
from pgwarden.operator import backup_sets

Obj = dict[str, Any]
TENANTS = [f"tenant-{i}" for i in range(1, 7)]


def decide(body: Obj, fleet: Fleet, targets: list[str] = TENANTS) -> Any:
    decision = backup_sets.decide(typed_backup_set(body), targets, fleet.states(), NOW)
    fleet.apply(decision)
    return decision


def test_every_target_gets_a_scheduled_database_backup_of_its_own() -> None:
    fleet = Fleet()
    decision = decide(backup_set(), fleet)
    assert len(decision.create) == 6
    child = decision.create[0]
    assert child["kind"] == "DatabaseBackup"
    assert child["metadata"]["labels"][SET_LABEL] == "tenants-nightly"
    assert child["spec"]["database"] == {"secretRef": {"name": "tenant-1"}}
    assert child["spec"]["schedule"] == "0 2 * * *"
    assert child["spec"]["storage"]["s3"]["prefix"] == "tenants/"
    names = {manifest["metadata"]["name"] for manifest in decision.create}
    assert len(names) == 6, "each child, and so each folder <prefix>/<namespace>/<child>/, is its own"
    assert not decide(backup_set(), fleet).create, "created once"


def test_staggered_schedules_differ_per_target_and_stay_within_the_window() -> None:
    fleet = Fleet()
    decision = decide(backup_set(stagger="2h"), fleet, [f"tenant-{i}" for i in range(40)])
    schedules = [manifest["spec"]["schedule"] for manifest in decision.create]
    minutes = {int(s.split()[0]) + 60 * (int(s.split()[1]) - 2) for s in schedules}
    assert len(minutes) > 20 and all(0 <= m < 120 for m in minutes)
    assert not decide(backup_set(stagger="2h"), fleet, [f"tenant-{i}" for i in range(40)]).replace
    unstaggered = decide(backup_set(), fleet, [f"tenant-{i}" for i in range(40)])
    moved = [schedule for schedule in schedules if schedule != "0 2 * * *"]
    assert len(unstaggered.replace) == len(moved), "only children whose schedule was shifted change"
    assert {r.spec["schedule"] for r in unstaggered.replace} == {"0 2 * * *"}


def test_the_set_counts_backups_stale_targets_failures_and_unverified_restores() -> None:
    body, fleet = backup_set(), Fleet()
    decide(body, fleet)
    for i, target in enumerate(TENANTS, 1):
        fleet.reconciled(target, "Scheduled", conditions={"Ready": "True", "Stale": "False"})
        if i <= 4:
            fleet.reconciled(
                target,
                "Scheduled",
                conditions={"Ready": "True", "Stale": "False"},
                last_backup=f"2025-03-01T0{i}:00:00Z",
                verified=i <= 2,
            )
    decision = decide(body, fleet)
    targets = decision.status.targets
    assert (targets.total, targets.backed_up, targets.pending, targets.unverified) == (6, 4, 2, 4)
    assert targets.done == "4/6"
    assert decision.status.phase == "Ready"
    assert str(decision.status.newest_backup) == "2025-03-01 04:00:00+00:00"
    assert str(decision.status.oldest_backup) == "2025-03-01 01:00:00+00:00"

    fleet.reconciled("tenant-5", "Failed", last_run_failed=True, message="pg_dump: connection refused")
    fleet.reconciled("tenant-6", "Scheduled", conditions={"Ready": "True", "Stale": "True"})
    degraded = decide(body, fleet)
    assert degraded.status.phase == "Degraded"
    assert degraded.status.targets.failed == 1 and degraded.status.targets.stale == 1
    assert degraded.status.stale == ["tenant-6"]
    assert [(f.target, f.message) for f in degraded.status.failures] == [
        ("tenant-5", "pg_dump: connection refused")
    ]
    stale = next(c for c in degraded.status.conditions if c.type == "Stale")
    assert stale.status == "True" and "tenant-6" in stale.message
    assert [e.reason for e in degraded.events] == ["Degraded"]
