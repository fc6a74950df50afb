"""Approval covers the SQL of ConfigMaps: status shows what they hold, the Job carries exactly the files
approved, and a ConfigMap edited after its files were shown runs nothing until its new files are approved."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from operator_runs import NOW, creates_no_run, written

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.task import TASK_ENV, Task
from pgwarden.operator import approval, migrations
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
FIRST = {"0001_init.sql": "CREATE TABLE t (id int);", "0002_more.sql": "ALTER TABLE t ADD COLUMN n int;"}
EDITED = dict(FIRST, **{"0002_more.sql": "DROP TABLE t;"})


def configmap(data: dict[str, str]) -> Obj:
    return {"metadata": {"name": "shop-migrations"}, "data": dict(data, **{"README.md": "not a migration"})}


def decide(body: Obj, data: dict[str, str] | None) -> Decision[Any]:
    found = {"shop-migrations": configmap(data) if data is not None else None}
    files = approval.read_config_maps(["shop-migrations"], found)
    return written(migrations.decide(read(body), None, [], SETTINGS, NOW, files))


def manual(resource: Callable[..., Obj]) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["approval"] = "Manual"
    return body


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task(decision: Decision[Any]) -> Task:
    assert decision.create is not None
    container = decision.create["spec"]["template"]["spec"]["containers"][0]
    value = next(item["value"] for item in container["env"] if item["name"] == TASK_ENV)
    return Task.model_validate_json(value)


def test_awaiting_approval_shows_the_files_the_configmap_holds_with_their_checksums(
    resource: Callable[..., Obj],
) -> None:
    waiting = decide(manual(resource), FIRST)
    shown = waiting.status["approval"]
    assert waiting.status["phase"] == "AwaitingApproval" and creates_no_run(waiting)
    assert shown["files"] == [{"name": name, "sha256": sha(sql)} for name, sql in sorted(FIRST.items())]
    previewed = task(waiting)  # the read-only preview plans and lints exactly the files shown
    assert previewed.migration is not None and previewed.migration.migrations.inline is not None
    assert {item.name: item.sql for item in previewed.migration.migrations.inline} == FIRST
    assert shown["approved"] is False and len(shown["digest"]) == approval.DIGEST_LENGTH


def test_the_approved_job_carries_the_files_shown_not_the_configmap(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    body["status"] = decide(body, FIRST).status
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: f"1-{body['status']['approval']['digest']}"}
    started = decide(body, FIRST)
    assert started.status["phase"] == "Pending" and started.status["approval"]["approved"] is True
    carried = task(started)
    assert carried.migrations_dir is None  # nothing mounted: the pod never reads the ConfigMap
    assert carried.migration is not None and carried.migration.migrations.inline is not None
    assert {item.name: item.sql for item in carried.migration.migrations.inline} == FIRST
    volumes = started.create["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
    assert not any("configMap" in volume or "projected" in volume for volume in volumes)


def test_the_generation_alone_does_not_approve_what_a_configmap_holds(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    body["status"] = decide(body, FIRST).status
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    waiting = decide(body, FIRST)
    assert waiting.create is None and waiting.status["phase"] == "AwaitingApproval"
    assert "names the generation but not the files" in waiting.status["message"]
    assert (
        f"{APPROVED_ANNOTATION}=1-{waiting.status['approval']['digest']} --overwrite"
        in waiting.status["message"]
    )


def test_a_configmap_edited_after_approval_runs_nothing_until_its_new_files_are_approved(
    resource: Callable[..., Obj],
) -> None:
    body = manual(resource)
    body["status"] = decide(body, FIRST).status
    old_digest = body["status"]["approval"]["digest"]
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: f"1-{old_digest}"}
    refused = decide(body, EDITED)  # edited between the review and the operator seeing the approval
    assert creates_no_run(refused) and refused.status["phase"] == "AwaitingApproval"
    assert refused.status["approval"]["files"][1] == {"name": "0002_more.sql", "sha256": sha("DROP TABLE t;")}
    new_digest = refused.status["approval"]["digest"]
    assert new_digest != old_digest
    assert (
        "approved other files than its ConfigMap holds now (changed since), so nothing runs"
        in (refused.status["message"])
    )
    assert f"{APPROVED_ANNOTATION}=1-{new_digest} --overwrite" in refused.status["message"]

    body["status"] = refused.status
    again = decide(body, EDITED)  # the same refusal, not announced twice, still nothing created
    assert again.create is None and again.events == ()

    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: f"1-{new_digest}"}
    started = decide(body, EDITED)
    carried = task(started)
    assert carried.migration is not None and carried.migration.migrations.inline is not None
    assert {item.name: item.sql for item in carried.migration.migrations.inline} == EDITED


def test_a_missing_configmap_is_named_and_nothing_runs(resource: Callable[..., Obj]) -> None:
    body = manual(resource)
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: "1"}
    waiting = decide(body, None)
    assert waiting.create is None and waiting.status["phase"] == "AwaitingApproval"
    assert "ConfigMap shop-migrations not found" in waiting.status["message"]


def test_automatic_migrations_still_mount_their_configmaps(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    started = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    assert task(started).migrations_dir is not None
