"""docs/argocd/health.lua run by a real Lua 5.1 (Argo CD's dialect) on statuses the operator writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from operator_runs import MIGRATION_ROLLED_BACK, MIGRATION_SUCCEEDED, NOW, finished_pod, job, pod, written

from pgwarden.operator import backups, migrations
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]
HEALTH = Path(__file__).resolve().parents[2] / "docs" / "argocd" / "health.lua"
LUA = shutil.which("lua5.1") or shutil.which("lua")
SETTINGS = JobSettings(image="pgwarden:test")

pytestmark = pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.1)")


def lua_value(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua for these texts
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"


def health(body: Obj) -> tuple[str, str]:
    assert LUA is not None
    script = f"obj = {lua_value(body)}\nlocal hs = (function()\n{HEALTH.read_text()}\nend)()\nprint(hs.status)\nprint(hs.message)\n"
    result = subprocess.run([LUA, "-"], input=script, capture_output=True, text=True, check=True, timeout=10)
    status, _, message = result.stdout.partition("\n")
    return status, message.strip()


def with_status(body: Obj, status: Obj) -> Obj:
    return dict(body, status=status)


def test_states_of_a_migration_map_to_argo_cd_health(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    assert health(body)[0] == "Progressing"
    created = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    assert health(with_status(body, created.status))[0] == "Progressing"
    name = created.status["job"]

    done = written(
        migrations.decide(
            read(body),
            observe(job(name, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)]),
            [],
            SETTINGS,
            NOW,
        )
    )
    assert health(with_status(body, done.status)) == ("Healthy", done.status["message"])

    rolled = written(
        migrations.decide(
            read(body),
            observe(job(name, state="failed"), [finished_pod(MIGRATION_ROLLED_BACK, exit_code=1)]),
            [],
            SETTINGS,
            NOW,
        )
    )
    assert health(with_status(body, rolled.status))[0] == "Degraded"

    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}
    stuck = written(
        migrations.decide(
            read(body), observe(job(name), [pod(waiting=waiting, phase="Pending")]), [], SETTINGS, NOW
        )
    )
    assert health(with_status(body, stuck.status))[0] == "Degraded"

    cancelled = {**rolled.status, "phase": "Cancelled", "message": "the Job was deleted while it ran"}
    assert health(with_status(body, cancelled))[0] == "Degraded"  # a cancelled run did not happen

    body["metadata"]["generation"] = 2
    assert health(with_status(body, done.status))[0] == "Progressing"  # the operator has not caught up


def test_awaiting_approval_is_suspended_not_degraded(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["approval"] = "Manual"
    decision = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    status, message = health(with_status(body, decision.status))
    assert status == "Suspended"
    assert "kubectl annotate dbmig shop -n shop pgwarden.io/approved=1 --overwrite" in message


def test_backups_are_healthy_when_scheduled_and_degraded_when_stale(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    scheduled = written(backups.decide(read(body), [], None, SETTINGS, NOW))
    assert health(with_status(body, scheduled.status))[0] == "Healthy"
    body["status"] = {
        "lastSuccessfulTime": "2025-02-20T01:00:00Z",
        "lastBackup": {"id": "x", "location": "y", "completedAt": "2025-02-20T01:00:00Z"},
    }
    stale = written(backups.decide(read(body), [], None, SETTINGS, NOW))
    assert health(with_status(body, stale.status))[0] == "Degraded"
    body["spec"]["suspend"] = True
    suspended = written(backups.decide(read(body), [], None, SETTINGS, NOW))
    assert health(with_status(body, suspended.status))[0] == "Suspended"


def test_a_rehearsal_is_progressing_and_a_required_one_that_failed_is_degraded(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["rehearsal"] = {
        "location": "shop/",
        "storage": {"volume": {"claimName": "b"}},
        "required": True,
    }
    rehearsing = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    assert rehearsing.status["phase"] == "Rehearsing"
    assert health(with_status(body, rehearsing.status))[0] == "Progressing"
    body["status"] = rehearsing.status
    failed = {"outcome": "Failed", "error": {"message": "the rehearsal failed: check failed"}}
    run = observe(
        job(rehearsing.create["metadata"]["name"], state="failed"), [finished_pod(failed, exit_code=1)]
    )
    stopped = written(migrations.decide(read(body), None, [], SETTINGS, NOW, rehearsal_run=run))
    assert stopped.status["phase"] == "Failed"
    assert health(with_status(body, stopped.status)) == ("Degraded", stopped.status["message"])
