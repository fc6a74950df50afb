"""A DatabaseMigration's status, conditions and Events from its Job: every state a run goes through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from operator_runs import (
    MIGRATION_ROLLED_BACK,
    MIGRATION_SUCCEEDED,
    NOW,
    creates_no_run,
    finished_pod,
    job,
    pod,
    task_of,
    written,
)

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import DatabaseMigrationStatus
from pgwarden.api.task import Task
from pgwarden.operator import migrations
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision, status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")


def decide(body: Obj, job_obj: Obj | None = None, pods: list[Obj] | None = None) -> Decision:
    run = observe(job_obj, pods or []) if job_obj else None
    decision = written(migrations.decide(read(body), run, [], SETTINGS, NOW))
    DatabaseMigrationStatus.model_validate(decision.status)  # whatever we write fits the CRD's schema
    return decision


def cond(decision: Decision, kind: str) -> Obj:
    found = next((c for c in decision.status["conditions"] if c["type"] == kind), None)
    assert found is not None, kind
    return found


def test_a_new_migration_creates_its_job_and_says_so(resource: Callable[..., Obj]) -> None:
    decision = decide(resource("migration-shop.yaml", "DatabaseMigration"))
    assert decision.create is not None and decision.create["kind"] == "Job"
    assert decision.status["phase"] == "Pending"
    assert decision.status["job"] == decision.create["metadata"]["name"]
    assert cond(decision, "Progressing")["status"] == "True"
    assert cond(decision, "Ready")["status"] == "False"
    assert [e.reason for e in decision.events] == ["Started"]


def test_an_existing_job_is_adopted_not_created_again(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    decision = decide(body, job(name), [pod()])
    assert decision.create is None
    assert decision.status["phase"] == "Running"


def test_success_puts_counts_applied_and_verification_on_status(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1}
    decision = decide(body, job(name, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)])
    status = decision.status
    assert status["phase"] == "Succeeded"
    assert status["currentVersion"] == "0004"
    assert status["tables"] == {"before": 0, "after": 2}
    assert status["rows"] == {"before": 0, "after": 2}
    assert [a["version"] for a in status["applied"]] == ["0001", "0002", "0003", "0004"]
    assert status["verification"]["passed"] is True
    assert [(f["rule"], f["file"], f["line"]) for f in status["lint"]] == [
        ("require-concurrent-index-creation", "0003_orders_by_customer.sql", 1)
    ]
    assert status["warnings"] == ["0003 runs outside a transaction"]
    assert status["message"] == "applied 4 migration(s), now at version 0004; 2 tables, 2 rows"
    assert status["durationSeconds"] == 1.2
    assert cond(decision, "Ready")["status"] == "True"
    assert cond(decision, "Progressing")["status"] == "False"
    assert cond(decision, "Drifted")["status"] == "False"
    assert [e.reason for e in decision.events] == ["Succeeded"]
    assert [(f.kind, f.outcome) for f in decision.finished] == [("migrate", "Succeeded")]


def test_a_rolled_back_run_says_what_failed_and_how_it_was_undone(resource: Callable[..., Obj]) -> None:
    body = resource("migration-fails.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1}
    decision = decide(body, job(name, state="failed"), [finished_pod(MIGRATION_ROLLED_BACK, exit_code=1)])
    status = decision.status
    assert status["phase"] == "RolledBack"
    assert status["rollback"] == {
        "strategy": "transaction",
        "outcome": "Succeeded",
        "message": "the transaction was rolled back",
    }
    assert status["message"].startswith('rolled back (transaction): migration 0002: column "price"')
    assert cond(decision, "Ready")["reason"] == "RolledBack"
    assert [e.reason for e in decision.events] == ["RolledBack"]
    assert decision.events[0].type == "Warning"
    assert decision.finished[0].outcome == "RolledBack"


def test_the_same_observation_twice_emits_no_second_event(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1}
    first = decide(body, job(name, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)])
    body["status"] = first.status
    second = decide(body, job(name, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)])
    assert second.events == () and second.finished == ()
    assert status_patch(first.status, second.status) == {}


def test_a_pod_waiting_for_a_missing_secret_is_a_clear_condition_not_running_forever(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "backup-s3-credentials" not found'}
    decision = decide(body, job(name), [pod(waiting=waiting, phase="Pending")])
    assert decision.status["phase"] == "Pending"
    ready = cond(decision, "Ready")
    assert ready["reason"] == "JobCannotStart"
    assert 'secret "backup-s3-credentials" not found' in ready["message"]
    assert cond(decision, "Progressing")["status"] == "False"
    assert [e.reason for e in decision.events] == ["CannotStart"]


def test_a_job_past_its_deadline_is_recovered_with_a_message_saying_so(resource: Callable[..., Obj]) -> None:
    """Stopped at its deadline before writing a report: what it left is unknown, so a recovery Job runs first
    (tests/operator/test_recovery_jobs.py follows it to the end)."""
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    decision = decide(body, job(name, state="failed", reason="DeadlineExceeded"), [])
    assert decision.status["phase"] == "Running"
    assert decision.create is not None and decision.create["metadata"]["name"].endswith(
        decision.status["recovered"]["job"][-6:]
    )
    assert "activeDeadlineSeconds" in decision.status["message"]
    assert cond(decision, "Ready")["reason"] == "Recovering"


def test_a_run_stopped_at_its_deadline_after_writing_its_report_says_why(
    resource: Callable[..., Obj],
) -> None:
    """The pod's SIGTERM handler writes a RolledBack report that knows only that it was terminated; the
    Job's DeadlineExceeded says why, and the status must say it too."""
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    terminated = {**MIGRATION_ROLLED_BACK, "error": {"message": "stopped by SIGTERM"}}
    decision = decide(
        body, job(name, state="failed", reason="DeadlineExceeded"), [finished_pod(terminated, exit_code=1)]
    )
    assert decision.status["phase"] == "RolledBack"
    assert "SIGTERM" in decision.status["message"]
    assert "activeDeadlineSeconds" in decision.status["message"]


def test_a_container_killed_for_memory_says_oomkilled(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    killed = pod(terminated={"exitCode": 137, "reason": "OOMKilled"}, phase="Failed")
    decision = decide(body, job(name, state="failed"), [killed])
    assert decision.status["phase"] == "Running"  # its recovery Job runs first
    assert "OOMKilled, exit code 137" in decision.status["message"]


def test_a_crash_without_report_shows_the_log_tail(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    crashed = finished_pod(None, exit_code=137, text="Traceback ...\nMemoryError")
    decision = decide(body, job(name, state="failed"), [crashed])
    assert decision.status["phase"] == "Running"  # its recovery Job runs first
    assert "exit code 137" in decision.status["message"]
    assert "MemoryError" in decision.status["message"]


INLINE = [
    {"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"},
    {"name": "0002_u.sql", "sql": "CREATE TABLE u (id int);"},
]


def manual(resource: Callable[..., Obj], generation: int = 1) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration", generation=generation)
    body["spec"]["approval"] = "Manual"
    body["spec"]["migrations"] = {"inline": [dict(item) for item in INLINE]}
    return body


def test_manual_approval_shows_the_files_and_waits_for_the_generation_to_be_named(
    resource: Callable[..., Obj],
) -> None:
    body = manual(resource)
    waiting = decide(body)
    assert waiting.create is not None and task_of(waiting.create).plan_only, "only the read-only preview"
    assert waiting.status["phase"] == "AwaitingApproval"
    command = f"kubectl annotate dbmig shop -n shop {APPROVED_ANNOTATION}=1 --overwrite"
    assert command in waiting.status["message"]
    assert cond(waiting, "Ready")["reason"] == "AwaitingApproval"
    assert waiting.status["approval"] == {
        "generation": 1,
        "approved": False,
        "files": [
            {"name": item["name"], "sha256": hashlib.sha256(item["sql"].encode()).hexdigest()}
            for item in INLINE
        ],
        "source": "inline",
    }
    assert [e.reason for e in waiting.events] == ["AwaitingApproval"]
    body["status"] = waiting.status
    previewing = observe(job(waiting.status["preview"]["job"]), [pod()])
    again = written(migrations.decide(read(body), None, [], SETTINGS, NOW, preview_run=previewing))
    assert again.events == () and again.create is None and status_patch(waiting.status, again.status) == {}


@pytest.mark.parametrize("value", ["true", "2", "yes"])
def test_an_approval_that_names_no_or_another_generation_runs_nothing(
    resource: Callable[..., Obj], value: str
) -> None:
    body = manual(resource)
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: value}
    decision = decide(body)
    assert creates_no_run(decision) and decision.status["phase"] == "AwaitingApproval"
    assert f"{APPROVED_ANNOTATION}={value}" in decision.status["message"]
    assert f"{APPROVED_ANNOTATION}=1 --overwrite" in decision.status["message"]


def test_approving_the_generation_runs_exactly_the_files_shown_once(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    body["status"] = decide(body).status
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    approved = decide(body)
    assert approved.create is not None and approved.status["phase"] == "Pending"
    assert approved.status["approval"]["approved"] is True
    env = {e["name"]: e for e in approved.create["spec"]["template"]["spec"]["containers"][0]["env"]}
    task = Task.model_validate_json(env["PGWARDEN_TASK"]["value"])
    assert task.migration is not None and task.migration.migrations.inline is not None
    ran = [(m.name, hashlib.sha256(m.sql.encode()).hexdigest()) for m in task.migration.migrations.inline]
    assert ran == [(f["name"], f["sha256"]) for f in approved.status["approval"]["files"]]

    body["status"] = approved.status
    name = approved.status["job"]
    running = decide(body, job(name), [pod()])
    assert running.create is None and running.status["approval"] == approved.status["approval"]


def test_an_edit_after_approval_waits_for_a_new_approval(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    body["status"] = decide(body).status
    body["spec"]["migrations"]["inline"][1]["sql"] = "DROP TABLE t;"  # edited after approval
    body["metadata"]["generation"] = 2
    decision = decide(body)
    assert creates_no_run(decision) and decision.status["phase"] == "AwaitingApproval"
    assert decision.status["approval"]["generation"] == 2
    assert decision.status["approval"]["files"][1]["sha256"] == hashlib.sha256(b"DROP TABLE t;").hexdigest()


def test_migrations_from_configmaps_or_an_image_name_their_source_for_approval(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["approval"] = "Manual"
    approval = decide(body).status["approval"]
    assert approval["files"] == [] and "ConfigMap shop-migrations" in approval["source"]
    body["spec"]["migrations"] = {"image": {"image": "registry.example/shop-migrations@sha256:" + "a" * 64}}
    approval = decide(body).status["approval"]
    assert approval["source"].startswith("image registry.example/shop-migrations@sha256:")


def test_a_finished_generation_whose_job_is_gone_is_not_run_again(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    body["status"] = {"phase": "Succeeded", "job": name, "observedGeneration": 1, "message": "done"}
    decision = decide(body)
    assert decision.create is None and decision.events == ()


def test_a_new_generation_runs_again(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration", generation=2)
    body["status"] = {"phase": "Succeeded", "job": "shop-migrate-1-abcdef", "observedGeneration": 1}
    decision = decide(body)
    assert decision.create is not None and "-migrate-2-" in decision.create["metadata"]["name"]


def test_a_new_generation_waits_for_the_run_of_the_previous_one(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration", generation=2)
    decision = written(migrations.decide(read(body), None, ["shop-migrate-1-abcdef"], SETTINGS, NOW))
    assert decision.create is None
    assert "shop-migrate-1-abcdef" in decision.status["message"]


def test_drift_sets_the_drifted_condition(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    report = dict(
        MIGRATION_SUCCEEDED,
        drift={
            "detected": True,
            "differences": [{"kind": "column", "object": "public.t.x", "detail": "only in live"}],
        },
    )
    decision = decide(body, job(name, state="complete"), [finished_pod(report)])
    assert cond(decision, "Drifted")["status"] == "True"


def test_status_patch_clears_fields_of_the_previous_run() -> None:
    old = {"phase": "RolledBack", "rollback": {"strategy": "transaction"}, "message": "x"}
    new = {"phase": "Succeeded", "message": "y"}
    assert status_patch(old, new) == {"rollback": None, "phase": "Succeeded", "message": "y"}


def test_transition_time_moves_only_when_the_status_changes(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    first = decide(body)
    body["status"] = dict(
        first.status,
        conditions=[dict(c, lastTransitionTime="2025-01-01T00:00:00Z") for c in first.status["conditions"]],
    )
    again = decide(body, job(first.status["job"]), [pod()])
    assert cond(again, "Ready")["lastTransitionTime"] == "2025-01-01T00:00:00Z"  # False before and after


def test_a_job_deleted_mid_run_cancels_the_run_and_is_never_created_again(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    created = decide(body)
    name = created.status["job"]
    body["status"] = decide(body, job(name), [pod()]).status
    assert body["status"]["phase"] == "Running"

    cancelled = decide(body)  # the Job is gone: someone deleted it to stop the run
    assert cancelled.create is None
    assert cancelled.status["phase"] == "Cancelled"
    assert cancelled.status["job"] == name
    assert "deleted" in cancelled.status["message"]
    assert cond(cancelled, "Ready")["reason"] == "Cancelled"
    assert cond(cancelled, "Progressing")["status"] == "False"
    assert [e.reason for e in cancelled.events] == ["Cancelled"]
    assert [f.outcome for f in cancelled.finished] == ["Cancelled"]

    for _ in range(2):
        body["status"] = cancelled.status
        again = decide(body)
        assert again.create is None and again.events == () and again.finished == ()
        assert status_patch(cancelled.status, again.status) == {}


def test_a_job_deleted_before_it_started_is_cancelled_too(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["status"] = decide(body).status  # Pending: Job created, not yet seen
    cancelled = decide(body)
    assert cancelled.create is None and cancelled.status["phase"] == "Cancelled"


def test_a_new_generation_after_a_cancelled_run_runs(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["status"] = decide(body).status
    body["status"] = decide(body).status
    body["metadata"]["generation"] = 2
    decision = decide(body)
    assert decision.create is not None and "-migrate-2-" in decision.create["metadata"]["name"]


def test_a_completed_job_whose_pod_is_gone_is_a_success_without_details(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = decide(body).status["job"]
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1}
    decision = decide(body, job(name, state="complete"), [])
    assert decision.status["phase"] == "Succeeded"
    assert "report" in decision.status["message"]
    assert cond(decision, "Ready")["status"] == "True"
    assert [e.reason for e in decision.events] == ["Succeeded"]
    body["status"] = decision.status
    again = decide(body, job(name, state="complete"), [])
    assert again.events == () and again.finished == () and again.create is None
