"""A run whose Job died without a report (issue 18, item 4): one recovery Job settles what it left before the
resource's phase is settled; status and an Event say what the recovery did; never a second recovery Job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from operator_runs import NOW, finished_pod, job, pod, written

from pgwarden.api.migration import DatabaseMigrationStatus
from pgwarden.api.restore import DatabaseRestoreStatus
from pgwarden.api.task import TASK_ENV, JobKind, Task
from pgwarden.operator import migrations, restores
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.naming import recovery_job_name
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
KILLED = pod(terminated={"exitCode": 137, "reason": "OOMKilled"}, phase="Failed")
RECOVERED: Obj = {
    "outcome": "Succeeded",
    "database": "shop@db:5432/shop",
    "currentVersion": "0001",
    "recovered": {
        "found": ["a restore rollback's swap died part-way: shop does not exist, ..."],
        "done": ["completed the swap: shop_pgw_verified_20250301_115940 is shop now"],
        "state": "Recovered",
    },
}
CLEAN: Obj = {
    "outcome": "Succeeded",
    "currentVersion": "0002",
    "recovered": {"found": [], "done": [], "state": "Clean"},
}


def decide_migration(
    body: Obj, dead: Obj, recovery: Obj | None = None, recovery_pods: list[Obj] | None = None
) -> Decision:
    run = observe(dead, [KILLED])
    recovery_run = observe(recovery, recovery_pods or []) if recovery else None
    decision = written(migrations.decide(read(body), run, [], SETTINGS, NOW, recovery_run=recovery_run))
    DatabaseMigrationStatus.model_validate(decision.status)
    return decision


def started(resource: Callable[..., Obj]) -> tuple[Obj, str]:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = written(migrations.decide(read(body), None, [], SETTINGS, NOW)).status["job"]
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1}
    return body, name


def task_of(job_manifest: Obj) -> Task:
    env = job_manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    return Task.model_validate_json(next(e["value"] for e in env if e["name"] == TASK_ENV))


def test_a_job_that_died_without_a_report_gets_one_recovery_job_before_its_phase(
    resource: Callable[..., Obj],
) -> None:
    body, name = started(resource)

    decision = decide_migration(body, job(name, state="failed"))

    assert decision.create is not None
    assert decision.create["metadata"]["name"] == recovery_job_name(name)
    assert decision.create["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "pgwarden",
        "job",
        "recover",
    ]
    task = task_of(decision.create)
    assert task.kind == JobKind.RECOVER and task.recovers == name
    assert decision.status["phase"] == "Running"
    assert decision.status["recovered"] == {"job": recovery_job_name(name)}
    assert "OOMKilled" in decision.status["message"]
    assert [e.reason for e in decision.events] == ["Recovering"]


def test_while_the_recovery_runs_nothing_more_is_created_or_said(resource: Callable[..., Obj]) -> None:
    body, name = started(resource)
    first = decide_migration(body, job(name, state="failed"))
    body["status"] = first.status

    again = decide_migration(
        body, job(name, state="failed"), job(recovery_job_name(name), task="recover"), [pod()]
    )

    assert again.create is None
    assert again.status["phase"] == "Running"
    assert again.events == ()


def test_the_recovery_report_settles_the_phase_and_status_says_what_it_did(
    resource: Callable[..., Obj],
) -> None:
    body, name = started(resource)
    body["status"] = decide_migration(body, job(name, state="failed")).status
    recovery = job(recovery_job_name(name), task="recover", state="complete")

    decision = decide_migration(body, job(name, state="failed"), recovery, [finished_pod(RECOVERED)])

    status = decision.status
    assert decision.create is None
    assert status["phase"] == "RolledBack"
    assert status["currentVersion"] == "0001"
    assert status["recovered"]["state"] == "Recovered"
    assert status["recovered"]["done"] == RECOVERED["recovered"]["done"]
    assert "completed the swap" in status["message"]
    assert [e.reason for e in decision.events] == ["Recovered"]
    body["status"] = status
    twice = decide_migration(body, job(name, state="failed"), recovery, [finished_pod(RECOVERED)])
    assert twice.create is None and twice.events == () and twice.status == status


def test_a_recovery_that_found_nothing_leaves_the_run_failed(resource: Callable[..., Obj]) -> None:
    body, name = started(resource)
    body["status"] = decide_migration(body, job(name, state="failed")).status
    recovery = job(recovery_job_name(name), task="recover", state="complete")

    decision = decide_migration(body, job(name, state="failed"), recovery, [finished_pod(CLEAN)])

    assert decision.status["phase"] == "Failed"
    assert decision.status["recovered"]["state"] == "Clean"
    assert "nothing was left to settle" in decision.status["message"]


def test_a_recovery_job_that_is_gone_is_never_made_again(resource: Callable[..., Obj]) -> None:
    body, name = started(resource)
    body["status"] = decide_migration(body, job(name, state="failed")).status

    decision = decide_migration(body, job(name, state="failed"))

    assert decision.create is None
    assert decision.status["phase"] == "Failed"
    assert "is gone" in decision.status["message"]


def test_a_recovery_job_that_died_too_says_to_recover_by_hand(resource: Callable[..., Obj]) -> None:
    body, name = started(resource)
    body["status"] = decide_migration(body, job(name, state="failed")).status
    recovery = job(recovery_job_name(name), task="recover", state="failed")

    decision = decide_migration(body, job(name, state="failed"), recovery, [KILLED])

    assert decision.create is None
    assert decision.status["phase"] == "Failed"
    assert decision.status["recovered"]["state"] == "Failed"
    assert "pgwarden recover" in decision.status["message"]
    assert [e.reason for e in decision.events] == ["RecoveryFailed"]


def test_a_restore_whose_job_died_is_recovered_too(resource: Callable[..., Obj]) -> None:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["source"] = {
        "location": "shop/20250102T020000Z",
        "storage": {"volume": {"claimName": "backups"}},
    }
    restore = read(body)
    first = written(restores.decide(restore, None, None, SETTINGS, NOW))
    name = first.status["job"]
    body["status"] = first.status

    decision = written(
        restores.decide(read(body), observe(job(name, state="failed"), [KILLED]), None, SETTINGS, NOW)
    )

    DatabaseRestoreStatus.model_validate(decision.status)
    assert decision.create is not None and decision.create["metadata"]["name"] == recovery_job_name(name)
    assert task_of(decision.create).restore is not None
    assert decision.status["phase"] == "Running"
    body["status"] = decision.status
    recovery = observe(
        job(recovery_job_name(name), task="recover", state="complete"),
        [finished_pod(json.loads(json.dumps(CLEAN)))],
    )
    settled = written(
        restores.decide(
            read(body), observe(job(name, state="failed"), [KILLED]), None, SETTINGS, NOW, recovery
        )
    )
    assert settled.status["phase"] == "Failed"
    assert settled.status["recovered"]["state"] == "Clean"
