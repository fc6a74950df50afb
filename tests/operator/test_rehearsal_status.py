"""spec.rehearsal of a DatabaseMigration: its Job, and status.rehearsal before approval and before the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from operator_runs import NOW, finished_pod, job, written

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.task import Task
from pgwarden.operator import approval, migrations, rehearsals
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.policy import PolicyDenied
from pgwarden.operator.resources import read

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
LOCK = {
    "relation": "customers",
    "mode": "AccessExclusiveLock",
    "migration": "0002",
    "statement": "0002_orders.sql:1",
    "heldSeconds": 3.1,
    "blocksWrites": True,
}
LINT = {"rule": "require-concurrent-index-creation", "file": "0003_orders_by_customer.sql", "line": 1}
REHEARSED = {
    "outcome": "Succeeded",
    "pending": ["0001", "0002"],
    "lint": [dict(LINT, message="blocks writes")],
    "rehearsal": {
        "outcome": "Succeeded",
        "backup": "s3://backups/shop/shop/shop-backup/20250301T110000Z",
        "durationSeconds": 2.5,
        "restoreSeconds": 1.5,
        "runSeconds": 1.0,
        "applied": [{"version": "0002", "description": "orders", "checksum": "b" * 64, "durationMs": 840}],
        "rowChanges": [{"table": "public.orders", "before": 10, "after": 12}],
        "locks": [dict(LOCK, heldSeconds=0.4)],
        "maxLockHoldSeconds": 2.0,
    },
}
HELD_TOO_LONG = {
    "outcome": "Failed",
    "error": {
        "message": "the rehearsal held locks that block writes longer than 2s: AccessExclusiveLock on customers"
    },
    "rehearsal": {"outcome": "Failed", "locks": [LOCK], "maxLockHoldSeconds": 2.0},
}


def migration(resource: Callable[..., Obj], **rehearsal: Any) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["rehearsal"] = {"backupRef": {"name": "shop-backup"}, "maxLockHold": "2s", **rehearsal}
    return body


def backup(resource: Callable[..., Obj]) -> Any:
    body = resource("backup-once.yaml", "DatabaseBackup")
    return read(dict(body, status={"lastBackup": {"id": "20250301T110000Z", "location": "s3://b/x"}}))


def step(
    resource: Callable[..., Obj], body: Obj, pods: list[Obj] | None = None, state: str = "complete"
) -> Any:
    """One decision; `pods` (the rehearsal Job's) when the Job named in status exists."""
    run = None
    if pods is not None:
        run = observe(job(body["status"]["rehearsal"]["job"], state=state), pods)
    decided = migrations.decide(
        read(body), None, [], SETTINGS, NOW, rehearsal_run=run, referenced=backup(resource)
    )  # type: ignore[arg-type]
    return written(decided)


def task_of(manifest: Obj) -> Task:
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    return Task.model_validate(json.loads(next(e["value"] for e in env if e["name"] == "PGWARDEN_TASK")))


def test_the_rehearsal_job_rehearses_the_referenced_backup_and_nothing_else(
    resource: Callable[..., Obj],
) -> None:
    body = migration(resource, server={"secretRef": {"name": "scratch-server"}})
    first = step(resource, body)
    assert first.status["phase"] == "Rehearsing"
    assert [e.reason for e in first.events] == ["Rehearsing"]
    manifest = first.create
    assert manifest["metadata"]["name"] == rehearsals.job_name(read(body), None)  # type: ignore[arg-type]
    assert first.status["rehearsal"] == {"generation": 1, "job": manifest["metadata"]["name"]}
    assert "job" not in first.status, "status.job names the real run's Job only"
    task = task_of(manifest)
    assert task.rehearsal is not None and task.rehearsal.max_lock_hold_seconds == 2.0
    assert task.rehearsal.server is True
    source = task.rehearsal.source
    assert source.scope is not None and source.scope.owner == "DatabaseBackup/shop/shop-backup"
    assert source.last_known_id == "20250301T110000Z"
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["PGWARDEN_REHEARSAL_PASSWORD"] == {
        "name": "scratch-server",
        "key": "password",
        "optional": True,
    }
    assert refs["PGWARDEN_REHEARSAL_URI"]["name"] == "scratch-server"
    # The backup's storage credentials (the DatabaseBackup's), never the pre-migration backup's.
    assert refs["AWS_ACCESS_KEY_ID"]["name"] == "backup-s3-credentials"


def test_the_rehearsal_job_is_held_to_the_policy_like_every_job(resource: Callable[..., Obj]) -> None:
    body = migration(resource)
    body["spec"]["jobTemplate"] = {"image": "evil.example/miner:1"}
    with pytest.raises(PolicyDenied, match=r"policy\.allowImageOverride|policy\.jobImages"):
        step(resource, body)


def test_a_manual_migration_shows_the_rehearsal_before_it_is_approved_then_runs_without_rehearsing_again(
    resource: Callable[..., Obj],
) -> None:
    body = migration(resource, required=True)
    body["spec"]["approval"] = "Manual"
    body["status"] = step(resource, body).status
    shown = step(resource, body, [finished_pod(REHEARSED)])
    assert shown.create is None
    status = shown.status
    assert status["phase"] == "AwaitingApproval"
    rehearsal = status["rehearsal"]
    assert rehearsal["outcome"] == "Succeeded" and rehearsal["durationSeconds"] == 2.5
    assert rehearsal["applied"][0]["durationMs"] == 840
    assert rehearsal["rowChanges"] == [{"table": "public.orders", "before": 10, "after": 12}]
    assert (
        rehearsal["locks"][0]["mode"] == "AccessExclusiveLock" and rehearsal["locks"][0]["heldSeconds"] == 0.4
    )
    assert rehearsal["maxLockHoldSeconds"] == 2.0
    assert [(f["rule"], f["file"], f["line"]) for f in status["lint"]] == [tuple(LINT.values())]
    assert "rehearsal Succeeded" in status["message"] and "pgwarden.io/approved=1" in status["message"]
    assert [e.reason for e in shown.events] == ["AwaitingApproval", "Rehearsed"]

    body["status"] = status
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    approved = step(resource, body)
    assert approved.status["phase"] == "Pending" and approved.create is not None
    assert "-rehearse-" not in approved.create["metadata"]["name"]
    assert task_of(approved.create).rehearsal is None, "the real run does not rehearse again"
    assert approved.status["rehearsal"] == rehearsal and approved.status["lint"] == status["lint"]


def test_a_required_rehearsal_that_held_a_lock_too_long_stops_the_run(resource: Callable[..., Obj]) -> None:
    body = migration(resource, required=True)
    body["status"] = step(resource, body).status
    stopped = step(resource, body, [finished_pod(HELD_TOO_LONG, exit_code=1)], state="failed")
    assert stopped.create is None
    status = stopped.status
    assert status["phase"] == "Failed"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RehearsalFailed"
    assert "held locks that block writes longer than 2s" in ready["message"]
    assert "rehearsal.required" in status["message"]
    assert [e.reason for e in stopped.events] == ["RehearsalFailed"]


def test_a_rehearsal_not_required_lets_a_failed_one_run(resource: Callable[..., Obj]) -> None:
    body = migration(resource, required=False)
    body["status"] = step(resource, body).status
    went = step(resource, body, [finished_pod(HELD_TOO_LONG, exit_code=1)], state="failed")
    assert went.status["phase"] == "Pending" and went.create is not None
    assert went.status["rehearsal"]["outcome"] == "Failed"
    assert sorted(e.reason for e in went.events) == ["RehearsalFailed", "Started"]


def test_configmap_files_edited_after_their_rehearsal_are_rehearsed_again(
    resource: Callable[..., Obj],
) -> None:
    body = migration(resource)
    body["spec"]["approval"] = "Manual"
    before = approval.read_config_maps(
        ["shop-migrations"], {"shop-migrations": {"data": {"0001_a.sql": "SELECT 1;"}}}
    )
    first = written(
        migrations.decide(read(body), None, [], SETTINGS, NOW, before, referenced=backup(resource))
    )  # type: ignore[arg-type]
    assert task_of(first.create).migration.migrations.inline[0].sql == "SELECT 1;"  # type: ignore[union-attr]
    body["status"] = first.status
    run = observe(job(first.create["metadata"]["name"], state="complete"), [finished_pod(REHEARSED)])
    shown = written(
        migrations.decide(
            read(body), None, [], SETTINGS, NOW, before, rehearsal_run=run, referenced=backup(resource)
        )  # type: ignore[arg-type]
    )
    assert shown.status["phase"] == "AwaitingApproval"
    body["status"] = shown.status
    after = approval.read_config_maps(
        ["shop-migrations"], {"shop-migrations": {"data": {"0001_a.sql": "SELECT 2;"}}}
    )
    again = written(
        migrations.decide(read(body), None, [], SETTINGS, NOW, after, referenced=backup(resource))
    )  # type: ignore[arg-type]
    assert again.status["phase"] == "Rehearsing" and again.create is not None
    assert again.create["metadata"]["name"] != first.create["metadata"]["name"]
    assert again.status["rehearsal"]["digest"] == migrations.digest_of(after)
