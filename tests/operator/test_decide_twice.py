"""Idempotence, for every kind and every phase: `decide` run again on the status it produced (and on the Job it
created, now visible) does nothing new, posts nothing and counts nothing, and a third run changes no field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from operator_runs import (
    BACKUP_SUCCEEDED,
    MIGRATION_ROLLED_BACK,
    MIGRATION_SUCCEEDED,
    NOW,
    finished_pod,
    job,
    pod,
)

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import INLINE_SQL_LIMIT
from pgwarden.operator import approval, backups, migrations, naming, rehearsals, restores
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import ObservedRun, observe
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision, status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
UID = "0f0e0d0c-1111-2222-3333-444455556666"
STUCK = {"reason": "CreateContainerConfigError", "message": 'secret "shop-db" not found'}
FAILED_BACKUP = {"outcome": "Failed", "error": {"message": "pg_dump: connection refused"}}
RESTORED = {
    "outcome": "Succeeded",
    "backup": BACKUP_SUCCEEDED["backup"],
    "tables": 3,
    "rows": 1200,
    "verification": {"matchesBackup": True, "differences": []},
    "durationSeconds": 3.0,
}
FAILED_MIGRATION = {"outcome": "Failed", "error": {"message": "permission denied for schema shop"}}
RECOVERED = {
    "outcome": "Succeeded",
    "currentVersion": "0001",
    "recovered": {
        "found": ["a dead run was rolling back"],
        "done": ["rollback restore: Succeeded"],
        "state": "Recovered",
    },
}
CONFIG_MAP_DIGEST = approval.digest(
    approval.checksums(
        approval.read_config_maps(
            ["shop-migrations"], {"shop-migrations": {"data": {"0001_init.sql": "CREATE TABLE t (id int);"}}}
        ).files
    )
)
REHEARSAL = {"backupRef": {"name": "shop-backup"}, "maxLockHold": "2s", "required": True}
LOCK = {
    "relation": "public.customers",
    "mode": "AccessExclusiveLock",
    "migration": "0002",
    "statement": "0002_orders.sql:1",
    "heldSeconds": 3.1,
    "blocksWrites": True,
}
REHEARSED = {
    "outcome": "Succeeded",
    "pending": ["0001", "0002"],
    "rehearsal": {
        "outcome": "Succeeded",
        "durationSeconds": 2.5,
        "applied": MIGRATION_SUCCEEDED["applied"],
        "locks": [dict(LOCK, heldSeconds=0.2)],
        "maxLockHoldSeconds": 2.0,
    },
}
REHEARSAL_FAILED = {
    "outcome": "Failed",
    "error": {"message": "the rehearsal held locks that block writes longer than 2s: AccessExclusiveLock"},
    "rehearsal": {"outcome": "Failed", "locks": [LOCK], "maxLockHoldSeconds": 2.0},
}
RESTORE_FAILED = {"outcome": "Failed", "error": {"message": "pg_restore: permission denied for schema shop"}}


@dataclass
class Case:
    """A resource as found (spec, status already written) and the Jobs (with their pods) it owns."""

    kind: str
    file: str
    phase: str
    jobs: list[tuple[Obj, list[Obj]]] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    spec: Obj = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 1
    config_map: dict[str, str] | None = None  # for a Manual migration from ConfigMaps: what it holds
    referenced: bool = True  # for a restore: whether its DatabaseBackup exists
    referenced_status: Obj = field(default_factory=lambda: {"lastBackup": dict(BACKUP_SUCCEEDED["backup"])})


MIGRATION_JOB = naming.job_name("DatabaseMigration", "shop", UID, 1)
REHEARSAL_JOB = naming.rehearsal_job_name("shop", UID, 1)
REHEARSING = {
    "phase": "Rehearsing",
    "observedGeneration": 1,
    "rehearsal": {"generation": 1, "job": REHEARSAL_JOB},
}
RESTORE_JOB = naming.job_name("DatabaseRestore", "shop-restored", UID, 1)
BACKUP_JOB = naming.job_name("DatabaseBackup", "shop-backup", UID, 1)
STARTED = {"phase": "Pending", "job": MIGRATION_JOB, "observedGeneration": 1}
CASES = [
    Case("DatabaseMigration", "migration-shop.yaml", "Pending"),
    Case("DatabaseMigration", "migration-shop.yaml", "AwaitingApproval", spec={"approval": "Manual"}),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        spec={"approval": "Manual"},
        annotations={APPROVED_ANNOTATION: "1"},
    ),
    Case("DatabaseMigration", "migration-shop.yaml", "Running", [(job(MIGRATION_JOB), [pod()])], STARTED),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        [(job(MIGRATION_JOB), [pod(waiting=STUCK, phase="Pending")])],
        STARTED,
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Succeeded",
        [(job(MIGRATION_JOB, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)])],
        STARTED,
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "RolledBack",
        [(job(MIGRATION_JOB, state="failed"), [finished_pod(MIGRATION_ROLLED_BACK, exit_code=1)])],
        STARTED,
    ),
    # A Job that died without a report: its one recovery Job runs first, then its report settles the phase.
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Running",
        [(job(MIGRATION_JOB, state="failed", reason="DeadlineExceeded"), [])],
        STARTED,
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "RolledBack",
        [
            (job(MIGRATION_JOB, state="failed", reason="DeadlineExceeded"), []),
            (
                job(naming.recovery_job_name(MIGRATION_JOB), task="recover", state="complete"),
                [finished_pod(RECOVERED)],
            ),
        ],
        dict(STARTED, recovered={"job": naming.recovery_job_name(MIGRATION_JOB)}),
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Succeeded",
        [(job(MIGRATION_JOB, state="complete"), [])],
        STARTED,
    ),
    Case("DatabaseMigration", "migration-shop.yaml", "Cancelled", [], dict(STARTED, phase="Running")),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Failed",
        [(job(MIGRATION_JOB, state="failed"), [finished_pod(FAILED_MIGRATION, exit_code=1)])],
        STARTED,
    ),
    Case(
        "DatabaseMigration", "migration-shop.yaml", "Pending", [(job(MIGRATION_JOB), [pod()])], generation=2
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "AwaitingApproval",
        spec={"approval": "Manual"},
        config_map={"0001_init.sql": "CREATE TABLE t (id int);"},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        spec={"approval": "Manual"},
        config_map={"0001_init.sql": "CREATE TABLE t (id int);"},
        annotations={APPROVED_ANNOTATION: "1-" + CONFIG_MAP_DIGEST},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Failed",
        spec={
            "migrations": {"inline": [{"name": "0001_m.sql", "sql": '"\\' * (INLINE_SQL_LIMIT // 2 - 10)}]}
        },
    ),
    # spec.rehearsal: its Job first, then approval or the run; a required one that failed stops it.
    Case("DatabaseMigration", "migration-shop.yaml", "Rehearsing", spec={"rehearsal": REHEARSAL}),
    Case(
        "DatabaseMigration", "migration-shop.yaml", "Pending", spec={"rehearsal": REHEARSAL}, referenced=False
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        spec={"rehearsal": REHEARSAL},
        referenced_status={},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Rehearsing",
        [(job(REHEARSAL_JOB), [pod()])],
        REHEARSING,
        spec={"rehearsal": REHEARSAL},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        [(job(REHEARSAL_JOB), [pod(waiting=STUCK, phase="Pending")])],
        REHEARSING,
        spec={"rehearsal": REHEARSAL},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "AwaitingApproval",
        [(job(REHEARSAL_JOB, state="complete"), [finished_pod(REHEARSED)])],
        REHEARSING,
        spec={"rehearsal": REHEARSAL, "approval": "Manual"},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Pending",
        [(job(REHEARSAL_JOB, state="complete"), [finished_pod(REHEARSED)])],
        REHEARSING,
        spec={"rehearsal": REHEARSAL},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Failed",
        [(job(REHEARSAL_JOB, state="failed"), [finished_pod(REHEARSAL_FAILED, exit_code=1)])],
        REHEARSING,
        spec={"rehearsal": REHEARSAL},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "AwaitingApproval",
        [(job(REHEARSAL_JOB, state="failed"), [finished_pod(REHEARSAL_FAILED, exit_code=1)])],
        REHEARSING,
        spec={"rehearsal": dict(REHEARSAL, required=False), "approval": "Manual"},
    ),
    Case(
        "DatabaseMigration",
        "migration-shop.yaml",
        "Failed",
        [],
        REHEARSING,
        spec={"rehearsal": REHEARSAL},
    ),
    Case("DatabaseRestore", "restore.yaml", "Pending", referenced=False),
    Case("DatabaseRestore", "restore.yaml", "Pending", referenced_status={}),
    Case("DatabaseRestore", "restore.yaml", "Pending"),
    Case("DatabaseRestore", "restore.yaml", "Running", [(job(RESTORE_JOB), [pod()])], {"job": RESTORE_JOB}),
    Case(
        "DatabaseRestore",
        "restore.yaml",
        "Pending",
        [(job(RESTORE_JOB), [pod(waiting=STUCK, phase="Pending")])],
        {"job": RESTORE_JOB},
    ),
    Case(
        "DatabaseRestore",
        "restore.yaml",
        "Succeeded",
        [(job(RESTORE_JOB, state="complete"), [finished_pod(RESTORED)])],
        {"job": RESTORE_JOB},
    ),
    Case(
        "DatabaseRestore",
        "restore.yaml",
        "Failed",
        [(job(RESTORE_JOB, state="failed"), [finished_pod(RESTORE_FAILED, exit_code=1)])],
        {"job": RESTORE_JOB},
    ),
    Case("DatabaseRestore", "restore.yaml", "Cancelled", [], {"job": RESTORE_JOB, "phase": "Running"}),
    Case(
        "DatabaseRestore",
        "restore.yaml",
        "Succeeded",
        [(job(RESTORE_JOB, state="complete"), [])],
        {"job": RESTORE_JOB},
    ),
    Case("DatabaseBackup", "backup-once.yaml", "Pending"),
    Case("DatabaseBackup", "backup-once.yaml", "Running", [(job(BACKUP_JOB), [pod()])]),
    Case(
        "DatabaseBackup",
        "backup-once.yaml",
        "Pending",
        [(job(BACKUP_JOB), [pod(waiting=STUCK, phase="Pending")])],
    ),
    Case(
        "DatabaseBackup",
        "backup-once.yaml",
        "Succeeded",
        [(job(BACKUP_JOB, state="complete"), [finished_pod(BACKUP_SUCCEEDED)])],
    ),
    Case(
        "DatabaseBackup",
        "backup-once.yaml",
        "Failed",
        [(job(BACKUP_JOB, state="failed"), [finished_pod(FAILED_BACKUP, exit_code=1)])],
    ),
    Case("DatabaseBackup", "backup-nightly.yaml", "Scheduled"),
    Case("DatabaseBackup", "backup-nightly.yaml", "Suspended", spec={"suspend": True}),
    Case(  # Stale: the last success is older than staleAfter (26h)
        "DatabaseBackup",
        "backup-nightly.yaml",
        "Scheduled",
        status={
            "lastSuccessfulTime": "2025-02-20T01:00:00Z",
            "lastBackup": {"id": "x", "location": "y", "completedAt": "2025-02-20T01:00:00Z"},
        },
    ),
    Case(
        "DatabaseBackup",
        "backup-nightly.yaml",
        "Scheduled",
        [(job("nightly-1", state="complete"), [finished_pod(BACKUP_SUCCEEDED)])],
    ),
    Case(
        "DatabaseBackup",
        "backup-nightly.yaml",
        "Failed",
        [(job("nightly-1", state="failed"), [finished_pod(FAILED_BACKUP, exit_code=1)])],
    ),
]


def _step(case: Case, body: Obj, jobs: list[tuple[Obj, list[Obj]]], cronjob: Obj | None) -> Decision[Any]:
    """One reconcile of the case's resource, as `reconcile.decide` feeds the per-kind `decide`."""
    resource = read(body)
    runs = [observe(job_obj, pods) for job_obj, pods in jobs]
    meta = resource.metadata
    current = naming.job_name(case.kind, meta.name or "", UID, meta.generation or 1)
    if case.kind == "DatabaseMigration":
        run = next((r for r in runs if r.job == current), None)
        files = None
        if case.config_map is not None and run is None:
            found = {"shop-migrations": {"data": case.config_map}}
            files = approval.read_config_maps(["shop-migrations"], found)
        rehearsal_job = rehearsals.job_name(resource, migrations.digest_of(files))  # type: ignore[arg-type]
        rehearsal = next((r for r in runs if r.job == rehearsal_job), None)
        recovering = naming.recovery_job_name(current)
        recovery = next((r for r in runs if r.job == recovering), None)
        others = [r.job for r in runs if r.active and r.job not in (current, rehearsal_job, recovering)]
        return migrations.decide(
            resource,  # type: ignore[arg-type]
            run,
            others,
            SETTINGS,
            NOW,
            files,
            rehearsal_run=rehearsal,
            referenced=_referenced(case, "shop-backup"),  # type: ignore[arg-type]
            recovery_run=recovery,
        )
    if case.kind == "DatabaseBackup":
        return backups.decide(resource, runs, cronjob, SETTINGS, NOW)  # type: ignore[arg-type]
    backup = _referenced(case, resource.spec.source.backup_ref.name)  # type: ignore[union-attr]
    chosen: ObservedRun | None = restores.pick_run(resource.status, runs)  # type: ignore[arg-type]
    recovery = next((r for r in runs if chosen and r.job == naming.recovery_job_name(chosen.job)), None)
    return restores.decide(resource, chosen, backup, SETTINGS, NOW, recovery)  # type: ignore[arg-type]


def _referenced(case: Case, name: str) -> Any:
    """The DatabaseBackup a restore's (or a rehearsal's) backupRef names, if the case has it."""
    if not case.referenced:
        return None
    found = _resource("backup-once.yaml", "DatabaseBackup")
    found["metadata"]["name"] = name
    return read(dict(found, status=case.referenced_status))


_resource: Callable[..., Obj]


@pytest.fixture(autouse=True)
def _examples(resource: Callable[..., Obj]) -> None:
    global _resource
    _resource = resource


def _created(create: Obj | None) -> tuple[list[tuple[Obj, list[Obj]]], Obj | None]:
    """What the watch shows once the decision's Job or CronJob exists: a Job not started yet, or the CronJob."""
    if create is None:
        return [], None
    if create["kind"] == "CronJob":
        return [], copy.deepcopy(create)
    fresh = {"metadata": dict(create["metadata"], creationTimestamp="2025-03-01T12:00:00Z"), "status": {}}
    return [(fresh, [])], None


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-{c.phase}-{c.file}-{len(c.jobs)}")
def test_deciding_again_on_the_status_written_does_nothing_posts_nothing_counts_nothing(case: Case) -> None:
    body = _resource(case.file, case.kind)
    body["metadata"]["generation"] = case.generation
    body["spec"].update(case.spec)
    body["metadata"].setdefault("annotations", {}).update(case.annotations)
    body["status"] = copy.deepcopy(case.status)
    first = _step(case, body, case.jobs, None)
    assert first.status.phase == case.phase, first.status.message
    if case.kind == "DatabaseBackup" and case.status.get("lastSuccessfulTime"):
        assert [e.reason for e in first.events] == ["Stale"]  # posted once, below not again

    made_jobs, cronjob = _created(first.create)
    body["status"] = first.status.to_status()
    second = _step(case, body, case.jobs + made_jobs, cronjob)
    assert second.create is None
    assert second.delete_cronjob is None or first.delete_cronjob == second.delete_cronjob
    assert second.events == (), [e.reason for e in second.events]
    assert second.finished == ()

    body["status"] = second.status.to_status()
    third = _step(case, body, case.jobs + made_jobs, cronjob)
    assert third.create is None and third.events == () and third.finished == ()
    assert status_patch(body["status"], third.status.to_status()) == {}
