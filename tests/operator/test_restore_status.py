"""DatabaseRestore: the source resolved from a DatabaseBackup, then one Job and its verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operator_runs import BACKUP_SUCCEEDED, NOW, finished_pod, job

from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus
from pgwarden.operator import restores
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.status import Decision
from pgwarden.operator.task import BackupScope, RestoreSource, Task

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")


def decide(
    body: Obj, job_obj: Obj | None = None, pods: list[Obj] | None = None, referenced: Obj | None = None
) -> Decision:
    run = observe(job_obj, pods or []) if job_obj else None
    decision = restores.decide(body, run, referenced, SETTINGS, NOW)
    DatabaseRestoreStatus.model_validate(decision.status)
    return decision


def test_a_missing_database_backup_is_named_in_the_status(resource: Callable[..., Obj]) -> None:
    decision = decide(resource("restore.yaml", "DatabaseRestore"))
    assert decision.create is None
    assert decision.status["phase"] == "Pending"
    assert "DatabaseBackup 'shop-backup' was not found" in decision.status["message"]


def test_latest_waits_for_the_first_complete_backup_then_uses_its_storage(
    resource: Callable[..., Obj],
) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = resource("backup-once.yaml", "DatabaseBackup")
    waiting = decide(body, referenced=backup)
    assert waiting.create is None and "no complete backup yet" in waiting.status["message"]

    backup["status"] = {"lastBackup": BACKUP_SUCCEEDED["backup"]}
    ready = decide(body, referenced=backup)
    assert ready.create is not None
    env = {e["name"]: e for e in ready.create["spec"]["template"]["spec"]["containers"][0]["env"]}
    task = Task.model_validate_json(env["PGWARDEN_TASK"]["value"])
    assert task.restore_source is not None
    assert task.restore_source.backup_id is None
    assert task.restore_source.storage.s3 is not None and task.restore_source.storage.s3.prefix == "shop/"
    # Only shop-backup's own backups, in its folder; the backup its status names if none is there yet.
    assert task.restore_source.scope == BackupScope(
        owner="DatabaseBackup/shop/shop-backup", path="shop/shop-backup"
    )
    assert task.restore_source.last_known_id == BACKUP_SUCCEEDED["backup"]["id"]
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "backup-s3-credentials"


def test_a_given_backup_id_is_passed_on(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["source"]["backupRef"]["id"] = "20250301T115900Z"
    source = restores.resolve_source(
        DatabaseRestore.model_validate(body), resource("backup-once.yaml", "DatabaseBackup")
    )
    assert isinstance(source, RestoreSource) and source.backup_id == "20250301T115900Z"
    assert source.scope is not None and source.scope.owner == "DatabaseBackup/shop/shop-backup"
    assert source.last_known_id is None


def test_a_raw_location_is_restored_as_given_without_an_owner(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["source"] = {
        "location": "shop/20250301T115900Z",
        "storage": {"s3": {"bucket": "pgwarden-backups", "credentialsSecretRef": {"name": "s3"}}},
    }
    source = restores.resolve_source(DatabaseRestore.model_validate(body), None)
    assert isinstance(source, RestoreSource)
    assert source.location == "shop/20250301T115900Z" and source.scope is None


def test_a_finished_restore_reports_what_it_restored_and_whether_it_matches(
    resource: Callable[..., Obj],
) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = resource("backup-once.yaml", "DatabaseBackup")
    backup["status"] = {"lastBackup": BACKUP_SUCCEEDED["backup"]}
    name = decide(body, referenced=backup).status["job"]
    report = {
        "outcome": "Failed",
        "backup": BACKUP_SUCCEEDED["backup"],
        "tables": 3,
        "rows": 1199,
        "verification": {
            "matchesBackup": False,
            "differences": [
                {"table": "public.orders", "expected": 1000, "actual": 999, "detail": "1 row missing"}
            ],
        },
        "error": {"message": "the restored database differs from backup 20250301T115900Z"},
    }
    decision = decide(body, job(name, state="failed"), [finished_pod(report, exit_code=1)], referenced=backup)
    status = decision.status
    assert status["phase"] == "Failed"
    assert status["restoredFrom"]["id"] == "20250301T115900Z"
    assert status["rows"] == {"after": 1199}
    assert status["verification"] == {
        "matchesBackup": False,
        "differences": [{"kind": "table", "object": "public.orders", "detail": "1 row missing"}],
    }
    assert [e.reason for e in decision.events] == ["Failed"]
