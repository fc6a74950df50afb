"""Restore drills declared on a DatabaseBackup (verify.schedule): their own CronJob, the drill Job's report as
lastVerifiedBackup, the Verified and Stale conditions and the gauge of seconds since a verified restore, each
decided twice without doing, posting or counting anything again."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from operator_runs import NOW, finished_pod, job, pod

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.task import IDENTITY_DIR, Task
from pgwarden.operator import backups, metrics, naming, reconcile
from pgwarden.operator.drills import drill_cronjob
from pgwarden.operator.jobs import TASK_LABEL, JobSettings, backup_cronjob, is_drill
from pgwarden.operator.observe import observe
from pgwarden.operator.policy import PolicyDenied
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision, status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
UID = "0f0e0d0c-1111-2222-3333-444455556666"
DRILL_OK: Obj = {
    "outcome": "Succeeded",
    "backup": {"id": "20250301T020000Z", "location": "s3://b/shop/shop/shop-nightly/20250301T020000Z"},
    "tables": 3,
    "rows": 1200,
    "verification": {"matchesBackup": True, "schemaMatches": True, "tablesCompared": 3, "differences": []},
    "markedVerified": True,
    "restoreSeconds": 4.2,
    "durationSeconds": 5.0,
    "completedAt": "2025-03-01T11:59:30Z",
}
DRILL_FAILED: Obj = {
    "outcome": "Failed",
    "backup": {"id": "20250301T020000Z", "location": "s3://b/shop/shop/shop-nightly/20250301T020000Z"},
    "verification": {
        "matchesBackup": False,
        "schemaMatches": False,
        "differences": [{"table": "public.orders", "expected": 10, "actual": None, "detail": "missing"}],
    },
    "error": {"message": "backup 20250301T020000Z does not restore as recorded: public.orders missing"},
    "durationSeconds": 3.0,
}


@pytest.fixture
def nightly(resource: Callable[..., Obj]) -> Obj:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["verify"] = {"schedule": "0 4 * * 0", "server": {"secretRef": {"name": "drill-server"}}}
    return body


def drill_job(name: str, **kwargs: Any) -> Obj:
    made = job(name, **kwargs)
    made["metadata"]["labels"][TASK_LABEL] = "drill"
    return made


def decide(body: Obj, drills: list[tuple[Obj, list[Obj]]], drill_cron: Obj | None) -> Decision[Any]:
    resource = read(body)
    assert isinstance(resource, DatabaseBackup)
    runs = [observe(j, pods) for j, pods in drills]
    cron = backup_cronjob(resource, SETTINGS)
    return backups.decide(resource, [], cron, SETTINGS, NOW, drill_runs=runs, drill_cronjob=drill_cron)


def test_the_drill_cronjob_is_the_backups_own_runs_one_at_a_time_and_restores_on_the_server_named(
    nightly: Obj,
) -> None:
    nightly["spec"]["encryption"] = {
        "recipientsSecretRef": {"name": "age-recipients"},
        "identitySecretRef": {"name": "age-identity"},
    }
    resource = read(
        dict(nightly, metadata=dict(nightly["metadata"], uid=UID, namespace="shop", generation=1))
    )
    assert isinstance(resource, DatabaseBackup)
    cron = drill_cronjob(resource, SETTINGS)
    assert cron["metadata"]["name"].startswith("shop-nightly-drill-") and len(cron["metadata"]["name"]) <= 52
    assert cron["metadata"]["name"] != backup_cronjob(resource, SETTINGS)["metadata"]["name"]
    assert cron["metadata"]["ownerReferences"][0]["kind"] == "DatabaseBackup"
    spec = cron["spec"]
    assert spec["schedule"] == "0 4 * * 0" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "Europe/Berlin"
    assert is_drill(cron) and spec["jobTemplate"]["metadata"]["labels"][TASK_LABEL] == "drill"
    assert spec["jobTemplate"]["metadata"]["labels"][naming.LABEL_RESOURCE_UID] == UID
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["backoffLimit"] == 0
    pod_spec = job_spec["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"] == ["pgwarden", "job", "drill"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PGWARDEN_DATABASE_SECRET"]["value"] == "drill-server"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "drill-server"
    assert "PGWARDEN_AGE_RECIPIENTS" not in env  # a drill opens, never seals
    (identity,) = [v for v in pod_spec["volumes"] if v["name"] == "age-identity"]
    assert identity["secret"] == {
        "secretName": "age-identity",
        "items": [{"key": "identity", "path": "identity"}],
        "defaultMode": 0o440,
    }
    assert any(m["mountPath"] == IDENTITY_DIR for m in container["volumeMounts"])
    task = Task.model_validate_json(env["PGWARDEN_TASK"]["value"])
    assert task.kind == "drill" and task.backup_scope is not None
    assert task.backup_scope.owner == "DatabaseBackup/shop/shop-nightly"


def test_an_encrypted_backup_with_drills_needs_the_identity(nightly: Obj) -> None:
    nightly["spec"]["encryption"] = {"recipientsSecretRef": {"name": "age-recipients"}}
    with pytest.raises(ValueError, match="identitySecretRef"):
        DatabaseBackup.model_validate(nightly)


def test_a_drill_of_a_copy_the_spec_does_not_have_is_refused(nightly: Obj) -> None:
    nightly["spec"]["verify"]["copy"] = 0
    with pytest.raises(ValueError, match=r"verify\.copy"):
        DatabaseBackup.model_validate(nightly)


def test_the_drill_cronjob_is_created_replaced_on_change_and_deleted_with_the_schedule(nightly: Obj) -> None:
    first = decide(nightly, [], None)
    (created,) = first.apply_cronjobs
    assert is_drill(created)
    assert decide(nightly, [], created).apply_cronjobs == ()

    nightly["spec"]["verify"]["schedule"] = "0 5 * * 0"
    (replaced,) = decide(nightly, [], created).apply_cronjobs
    assert replaced["metadata"]["name"] == created["metadata"]["name"]
    assert replaced["spec"]["schedule"] == "0 5 * * 0"

    del nightly["spec"]["verify"]["schedule"]
    gone = decide(nightly, [], replaced)
    assert (gone.apply_cronjobs, gone.delete_cronjobs) == ((), (created["metadata"]["name"],))
    assert not [c for c in gone.status.conditions if c.type == "Verified"]


def _twice(body: Obj, drills: list[tuple[Obj, list[Obj]]]) -> Decision[Any]:
    """Decide, write the status, decide again with the drill CronJob in place: nothing new the second time,
    no field changed the third."""
    body = copy.deepcopy(body)
    first = decide(body, drills, None)
    (cron,) = first.apply_cronjobs
    body["status"] = first.status.to_status()
    second = decide(body, drills, cron)
    assert second.apply_cronjobs == second.delete_cronjobs == () and second.create is None
    assert second.events == () and second.finished == (), [e.reason for e in second.events]
    body["status"] = second.status.to_status()
    third = decide(body, drills, cron)
    assert third.events == () and third.finished == ()
    assert status_patch(body["status"], third.status.to_status()) == {}
    return first


def _condition(decision: Decision[Any], kind: str) -> Any:
    return next(c for c in decision.status.conditions if c.type == kind)


def test_a_successful_drill_is_the_last_verified_backup_announced_and_counted_once(nightly: Obj) -> None:
    first = _twice(nightly, [(drill_job("shop-nightly-drill-1", state="complete"), [finished_pod(DRILL_OK)])])
    last = first.status.last_verified_backup
    assert last.outcome == "Succeeded" and last.id == "20250301T020000Z"
    assert last.restore_seconds == 4.2 and last.duration_seconds == 5.0 and last.job == "shop-nightly-drill-1"
    assert first.status.last_verified_time == NOW.replace(minute=59, hour=11, second=30)
    assert [e.reason for e in first.events] == ["DrillSucceeded"]
    assert [(f.kind, f.outcome) for f in first.finished] == [("drill", "Succeeded")]
    verified = _condition(first, "Verified")
    assert verified.status == "True" and "matched its manifest" in verified.message
    assert first.status.history == []  # a drill is no backup run


def test_a_drill_that_finds_a_missing_table_fires_the_condition_with_the_differences(nightly: Obj) -> None:
    failed = (drill_job("shop-nightly-drill-2", state="failed"), [finished_pod(DRILL_FAILED, exit_code=1)])
    first = _twice(nightly, [failed])
    last = first.status.last_verified_backup
    assert last.outcome == "Failed"
    assert [(d.kind, d.object) for d in last.differences] == [
        ("schema", "database"),
        ("table", "public.orders"),
    ]
    assert first.status.last_verified_time is None
    verified = _condition(first, "Verified")
    assert verified.status == "False" and verified.reason == "DrillFailed"
    assert "public.orders missing" in verified.message
    assert [e.reason for e in first.events] == ["DrillFailed"]


def test_a_drill_running_or_lost_without_a_report(nightly: Obj) -> None:
    running = _twice(nightly, [(drill_job("d-run"), [pod()])])
    assert running.status.last_verified_backup is None and running.events == ()
    assert _condition(running, "Verified").reason == "NotVerifiedYet"
    lost = _twice(nightly, [(drill_job("d-lost", state="failed", reason="DeadlineExceeded"), [])])
    assert lost.status.last_verified_backup.outcome == "Failed"
    assert "activeDeadlineSeconds" in (lost.status.last_verified_backup.message or "")


def test_no_verified_restore_for_longer_than_allowed_is_stale_once_and_the_gauge_says_since_when(
    nightly: Obj,
) -> None:
    nightly["spec"]["verify"]["staleAfter"] = "8d"
    nightly["status"] = {
        "lastSuccessfulTime": "2025-03-01T02:00:00Z",
        "lastBackup": {"id": "x", "location": "y", "completedAt": "2025-03-01T02:00:00Z"},
        "lastVerifiedTime": "2025-02-20T04:00:00Z",
        "lastVerifiedBackup": {"outcome": "Succeeded", "time": "2025-02-20T04:00:00Z", "job": "old-drill"},
    }
    first = _twice(nightly, [])
    stale = _condition(first, "Stale")
    assert stale.status == "True" and stale.reason == "NoRecentVerifiedRestore"
    assert "8d" in stale.message
    assert _condition(first, "Verified").reason == "NoRecentVerifiedRestore"
    assert [e.reason for e in first.events] == ["Stale"]

    metrics.observe_verified("shop", "shop-nightly", first.status)
    since = metrics.REGISTRY.get_sample_value(
        "pgwarden_backup_seconds_since_verified_restore", {"namespace": "shop", "name": "shop-nightly"}
    )
    expected = (first.status.last_verified_time - NOW).total_seconds()
    assert since is not None and since >= -expected  # now is later than the test's NOW
    metrics.forget("DatabaseBackup", "shop", "shop-nightly")
    assert (
        metrics.REGISTRY.get_sample_value(
            "pgwarden_backup_seconds_since_verified_restore", {"namespace": "shop", "name": "shop-nightly"}
        )
        is None
    )


def test_a_fresh_verified_restore_is_not_stale_and_the_next_look_is_when_it_would_turn(nightly: Obj) -> None:
    nightly["spec"]["verify"]["staleAfter"] = "8d"
    nightly["status"] = {
        "lastVerifiedTime": "2025-02-28T04:00:00Z",
        "lastVerifiedBackup": {"outcome": "Succeeded", "time": "2025-02-28T04:00:00Z", "job": "d"},
    }
    first = _twice(nightly, [])
    assert _condition(first, "Verified").status == "True"
    assert "last verified restore at 2025-02-28T04:00:00Z" in _condition(first, "Stale").message
    turns = first.status.last_verified_time + timedelta(days=8, seconds=1)
    assert first.deadline is not None and first.deadline <= turns


def test_a_backup_outside_the_policy_loses_its_drill_cronjob_too(nightly: Obj) -> None:
    nightly["spec"]["jobTemplate"]["image"] = "elsewhere.example/pgwarden:1"
    body = dict(nightly, metadata=dict(nightly["metadata"], uid=UID, namespace="shop", generation=1))
    resource = read(body)
    assert isinstance(resource, DatabaseBackup)
    with pytest.raises(PolicyDenied) as refused:
        drill_cronjob(resource, SETTINGS)
    decision = reconcile.policy_denied(body, refused.value, NOW)
    assert decision.delete_cronjob == naming.cronjob_name("shop-nightly", UID)
    assert decision.delete_cronjobs == (naming.drill_cronjob_name("shop-nightly", UID),)


@pytest.mark.parametrize(("days_ago", "stale"), [(13, False), (15, True)])
def test_without_stale_after_a_verified_restore_may_be_two_drill_intervals_old(
    nightly: Obj, days_ago: int, stale: bool
) -> None:
    when = (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    nightly["status"] = {
        "lastVerifiedTime": when,
        "lastVerifiedBackup": {"outcome": "Succeeded", "time": when, "job": "d"},
    }
    first = _twice(nightly, [])  # weekly drills: 14 days
    assert _condition(first, "Verified").status == ("False" if stale else "True")
    assert (_condition(first, "Stale").reason == "NoRecentVerifiedRestore") is stale
    if stale:
        assert "14d" in _condition(first, "Stale").message


def test_the_drill_cronjob_keeps_its_name_so_a_restarted_operator_adopts_it() -> None:
    # the name CronJobs made before it moved to naming.py carry: the same, or they would be orphaned
    digest = hashlib.sha256(f"{UID}/drill".encode()).hexdigest()[:6]
    assert naming.drill_cronjob_name("shop-nightly", UID) == f"shop-nightly-drill-{digest}"
    long = naming.drill_cronjob_name("n" * 80, UID)
    assert len(long) == naming.CRONJOB_NAME_LIMIT and long.endswith(f"-drill-{digest}")
