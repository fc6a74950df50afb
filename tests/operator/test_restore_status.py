"""DatabaseRestore: the source resolved from a DatabaseBackup, then one Job and its verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from operator_runs import BACKUP_SUCCEEDED, NOW, finished_pod, job, written
from pydantic import ValidationError

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.crd import KINDS_BY_NAME, crd
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus
from pgwarden.api.task import BackupScope, RestoreSource, Task
from pgwarden.operator import restores
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import typed
from pgwarden.operator.status import Decision

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")


def decide(
    body: Obj, job_obj: Obj | None = None, pods: list[Obj] | None = None, referenced: Obj | None = None
) -> Decision:
    run = observe(job_obj, pods or []) if job_obj else None
    backup = typed(DatabaseBackup, referenced) if referenced else None
    decision = written(restores.decide(typed(DatabaseRestore, body), run, backup, SETTINGS, NOW))
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
        DatabaseRestore.model_validate(body),
        typed(DatabaseBackup, resource("backup-once.yaml", "DatabaseBackup")),
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


def _ran(body: Obj, backup: Obj, state: str = "complete") -> tuple[str, Decision]:
    """The restore's Job created, then observed in `state`; (job name, decision)."""
    name = decide(body, referenced=backup).status["job"]
    body["status"] = decide(body, referenced=backup).status
    report = {"outcome": "Succeeded", "backup": BACKUP_SUCCEEDED["backup"], "tables": 3, "rows": 1200}
    pods = [finished_pod(report)] if state == "complete" else []
    return name, decide(body, job(name, state=state), pods, referenced=backup)


def _backup(resource: Callable[..., Obj]) -> Obj:
    backup = resource("backup-once.yaml", "DatabaseBackup")
    backup["status"] = {"lastBackup": BACKUP_SUCCEEDED["backup"]}
    return backup


def test_a_restore_that_ran_is_not_run_again_when_its_resource_changes(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = _backup(resource)
    name, done = _ran(body, backup)
    assert done.status["phase"] == "Succeeded"
    body["status"] = done.status
    body["metadata"]["generation"] = (
        2  # e.g. parallelJobs edited (a restore made before specs were immutable)
    )
    for _ in range(2):
        again = decide(body, referenced=backup)  # its Job may be gone too
        assert again.create is None and again.events == () and again.finished == ()
        assert again.status["phase"] == "Succeeded" and again.status["job"] == name
        body["status"] = again.status


def test_a_later_generation_follows_the_restore_already_running(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = _backup(resource)
    name, running = _ran(body, backup, state="active")
    body["status"] = running.status
    body["metadata"]["generation"] = 2
    decision = decide(body, job(name), [], referenced=backup)
    assert decision.create is None
    assert decision.status["job"] == name and decision.status["phase"] == "Running"
    assert restores.pick_run(
        DatabaseRestoreStatus.model_validate(decision.status),
        [observe(job("other-restore-2-x"), []), observe(job(name), [])],
    )


def test_deleting_a_running_restores_job_cancels_it_and_it_is_never_recreated(
    resource: Callable[..., Obj],
) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = _backup(resource)
    name, running = _ran(body, backup, state="active")
    body["status"] = running.status
    cancelled = decide(body, referenced=backup)
    assert cancelled.create is None
    assert cancelled.status["phase"] == "Cancelled" and cancelled.status["job"] == name
    assert [e.reason for e in cancelled.events] == ["Cancelled"]
    for _ in range(2):
        body["status"] = cancelled.status
        again = decide(body, referenced=backup)
        assert again.create is None and again.events == () and again.finished == ()


def test_the_run_of_a_restore_is_the_job_its_status_names_or_else_any_of_its_jobs() -> None:
    first, second = observe(job("r-restore-1-aaaaaa"), []), observe(job("r-restore-2-bbbbbb"), [])
    assert restores.pick_run(DatabaseRestoreStatus(job="r-restore-2-bbbbbb"), [first, second]) == second
    assert restores.pick_run(DatabaseRestoreStatus(), [first, second]) == first
    assert restores.pick_run(DatabaseRestoreStatus(job="r-restore-1-aaaaaa"), [second]) is None
    assert restores.pick_run(DatabaseRestoreStatus(), []) is None


def test_a_completed_restore_job_whose_pod_is_gone_is_a_success(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = _backup(resource)
    name = decide(body, referenced=backup).status["job"]
    decision = decide(body, job(name, state="complete"), [], referenced=backup)
    assert decision.status["phase"] == "Succeeded"
    assert "report" in decision.status["message"]


@pytest.mark.parametrize("mode", ["exact", "estimate", "none"])
def test_each_row_count_mode_reaches_the_restore_job(resource: Callable[..., Obj], mode: str) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["verify"] = {"rowCounts": mode}
    decision = decide(body, referenced=_backup(resource))
    assert decision.create is not None
    env = {e["name"]: e for e in decision.create["spec"]["template"]["spec"]["containers"][0]["env"]}
    task = Task.model_validate_json(env["PGWARDEN_TASK"]["value"])
    assert task.restore is not None and task.restore.verify.row_counts == mode  # job.run_restore passes it on


def test_a_row_count_mode_the_restore_does_not_know_is_refused(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["verify"] = {"rowCounts": "approximate"}
    with pytest.raises(ValidationError, match="estimate"):
        DatabaseRestore.model_validate(body)


def test_what_defines_a_restore_is_immutable_in_the_crd() -> None:
    spec = crd(KINDS_BY_NAME["DatabaseRestore"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = spec["properties"]["spec"]["properties"]
    for name in (
        "database",
        "source",
        "createDatabase",
        "clean",
        "terminateConnections",
        "parallelJobs",
        "verify",
    ):
        rules = [rule["rule"] for rule in fields[name]["x-kubernetes-validations"]]
        assert "self == oldSelf" in rules, name
    assert "self == oldSelf" not in str(fields["jobTemplate"])
    # the source keeps its own rules beside the new one
    assert len(fields["source"]["x-kubernetes-validations"]) == 4


def test_a_restore_that_counted_no_rows_says_so_rather_than_none_rows(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    backup = _backup(resource)
    name = decide(body, referenced=backup).status["job"]
    report = {"outcome": "Succeeded", "backup": BACKUP_SUCCEEDED["backup"], "tables": 3}
    decision = decide(body, job(name, state="complete"), [finished_pod(report)], referenced=backup)
    assert decision.status["phase"] == "Succeeded"
    assert "3 tables, rows not counted, matching the backup" in decision.status["message"]
    assert "None" not in decision.status["message"]
