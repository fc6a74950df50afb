"""A Manual migration without spec.rehearsal shows the plan and lint of its pending files before anyone
approves it (issue 26): a read-only preview Job plans on the live database, and status.lint and
status.preview carry what it found. The Job that runs the migration is created only by the approval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operator_runs import NOW, finished_pod, job, pod, task_of, written

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.operator import migrations
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read
from pgwarden.operator.status import status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
INLINE = [
    {"name": "0001_customers.sql", "sql": "CREATE TABLE customers (id int, name text);"},
    {"name": "0002_by_name.sql", "sql": "CREATE INDEX customers_name ON customers (name);"},
]
FINDING = {
    "rule": "require-concurrent-index-creation",
    "file": "0002_by_name.sql",
    "line": 1,
    "message": "blocks writes to customers while the index builds",
}
PLANNED = {
    "outcome": "Succeeded",
    "planOnly": True,
    "currentVersion": "0001",
    "pending": ["0002"],
    "lint": [FINDING],
}


def manual(resource: Callable[..., Obj], **spec: Any) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"].update(approval="Manual", migrations={"inline": INLINE}, **spec)
    return body


def step(body: Obj, pods: list[Obj] | None = None, state: str = "complete") -> Any:
    """One decision; `pods` (the preview Job's) when the Job status.preview names exists."""
    run = observe(job(body["status"]["preview"]["job"], state=state), pods) if pods is not None else None
    return written(migrations.decide(read(body), None, [], SETTINGS, NOW, preview_run=run))


def test_a_manual_migration_without_a_rehearsal_shows_its_lint_before_anyone_approves(
    resource: Callable[..., Obj],
) -> None:
    body = manual(resource)
    body["status"] = {}
    first = step(body)
    assert first.status["phase"] == "AwaitingApproval"
    assert first.create is not None and "-preview-1-" in first.create["metadata"]["name"]
    task = task_of(first.create)
    assert task.plan_only and task.rehearsal is None
    assert task.migration is not None and [m.name for m in task.migration.migrations.inline] == [
        f["name"] for f in INLINE
    ]
    assert first.status["preview"]["job"] == first.create["metadata"]["name"]
    assert "reads the plan and lint" in first.status["message"]

    body["status"] = first.status
    shown = step(body, [finished_pod(PLANNED)])
    assert shown.create is None and shown.status["phase"] == "AwaitingApproval"
    assert [(f["rule"], f["file"], f["line"]) for f in shown.status["lint"]] == [
        ("require-concurrent-index-creation", "0002_by_name.sql", 1)
    ]
    preview = shown.status["preview"]
    assert preview["outcome"] == "Succeeded" and preview["pending"] == ["0002"] and preview["completedAt"]
    assert "would apply 0002; lint: 1 finding(s)" in shown.status["message"]
    assert f"{APPROVED_ANNOTATION}=1" in shown.status["message"]

    body["status"] = shown.status  # decided again with its Job gone: nothing new, nothing lost
    again = step(body)
    assert again.create is None and again.events == () and status_patch(shown.status, again.status) == {}

    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    approved = step(body)
    assert approved.create is not None and "-migrate-1-" in approved.create["metadata"]["name"]
    assert not task_of(approved.create).plan_only
    assert approved.status["lint"] == shown.status["lint"], "the findings stay until the run reports its own"


def test_the_preview_says_which_findings_the_policy_will_refuse(resource: Callable[..., Obj]) -> None:
    body = manual(resource, policy={"lint": {"failOn": ["require-concurrent-index-creation"]}})
    body["status"] = step(body).status
    shown = step(body, [finished_pod(PLANNED)])
    assert (
        "which the run refuses (policy.lint.failOn): require-concurrent-index-creation"
        in (shown.status["message"])
    )
    assert task_of(step(manual(resource) | {"status": {}}).create).plan_only


def test_a_preview_that_cannot_read_the_plan_says_why_and_never_holds_the_approval_back(
    resource: Callable[..., Obj],
) -> None:
    body = manual(resource)
    body["status"] = step(body).status
    failed = step(
        body,
        [finished_pod({"outcome": "Failed", "error": {"message": "connection refused"}}, exit_code=1)],
        "failed",
    )
    assert failed.create is None and failed.status["phase"] == "AwaitingApproval"
    assert failed.status["preview"]["outcome"] == "Failed"
    assert "the plan could not be read: connection refused" in failed.status["message"]

    body["status"] = failed.status
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    assert "-migrate-1-" in step(body).create["metadata"]["name"]


def test_a_running_preview_is_waited_for_not_created_again(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    first = step(body | {"status": {}})
    body["status"] = first.status
    running = step(body, [pod()], state="active")
    assert running.create is None and status_patch(first.status, running.status) == {}


def test_automatic_migrations_and_rehearsed_ones_are_not_previewed(resource: Callable[..., Obj]) -> None:
    automatic = resource("migration-shop.yaml", "DatabaseMigration")
    decided = written(migrations.decide(read(automatic), None, [], SETTINGS, NOW))
    assert "-migrate-1-" in decided.create["metadata"]["name"] and "preview" not in decided.status

    rehearsed = manual(resource, rehearsal={"location": "shop/", "storage": {"volume": {"claimName": "b"}}})
    decided = written(migrations.decide(read(rehearsed), None, [], SETTINGS, NOW))
    assert "-rehearse-1-" in decided.create["metadata"]["name"] and "preview" not in decided.status
