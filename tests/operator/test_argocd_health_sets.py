"""docs/argocd/health.lua on the statuses the set kinds write: Progressing while rolling out, Suspended awaiting
approval, Degraded when halted or with stale backups, Healthy once complete or every target is scheduled."""

from __future__ import annotations

from typing import Any

import pytest
from set_support import NOW, Fleet, backup_set, migration_set, typed_backup_set, typed_migration_set
from test_argocd_health import LUA, health

from pgwarden.operator import backup_sets, migration_sets

Obj = dict[str, Any]
TENANTS = ["tenant-1", "tenant-2", "tenant-3"]

pytestmark = pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.1)")


def step(body: Obj, fleet: Fleet) -> Obj:
    """One decision of the set, carried out; the set as Argo CD then reads it."""
    if body["kind"] == "DatabaseBackupSet":
        decision: Any = backup_sets.decide(typed_backup_set(body), TENANTS, fleet.states(), NOW)
    else:
        decision = migration_sets.decide(typed_migration_set(body), TENANTS, fleet.states(), NOW)
    fleet.apply(decision)
    return dict(body, status=decision.status.to_status())


def test_a_migration_set_is_progressing_while_it_rolls_out_healthy_once_complete() -> None:
    body, fleet = migration_set(rollout={"canary": 1, "maxParallel": 2}), Fleet()
    assert health(body)[0] == "Progressing"
    step(body, fleet)
    fleet.waiting()
    rolling = step(body, fleet)
    assert health(rolling)[0] == "Progressing"
    fleet.reconciled("tenant-1", "Succeeded")
    step(body, fleet)
    for target in TENANTS[1:]:
        fleet.reconciled(target, "Succeeded")
    done = step(body, fleet)
    assert health(done) == ("Healthy", "all 3 targets migrated")


def test_a_halted_migration_set_is_degraded_and_names_the_target() -> None:
    body, fleet = migration_set(rollout={"canary": 1}), Fleet()
    step(body, fleet)
    fleet.waiting()
    step(body, fleet)
    fleet.reconciled("tenant-1", "RolledBack", message="check failed: invoices empty")
    status, message = health(step(body, fleet))
    assert status == "Degraded"
    assert "tenant-1 (check failed: invoices empty)" in message


def test_a_manual_set_awaiting_its_approval_is_suspended() -> None:
    body, fleet = migration_set(approval="Manual"), Fleet()
    step(body, fleet)
    fleet.waiting()
    status, message = health(step(body, fleet))
    assert status == "Suspended"
    assert "kubectl annotate dbmigset tenants -n shop pgwarden.io/approved=1-" in message


def test_a_backup_set_is_healthy_when_every_target_is_scheduled_degraded_when_one_is_stale() -> None:
    body, fleet = backup_set(), Fleet()
    assert health(step(body, fleet))[0] == "Progressing"
    for target in TENANTS:
        fleet.reconciled(target, "Scheduled", conditions={"Ready": "True", "Stale": "False"})
    assert health(step(body, fleet))[0] == "Healthy"
    fleet.reconciled("tenant-2", "Scheduled", conditions={"Ready": "True", "Stale": "True"})
    status, message = health(step(body, fleet))
    assert status == "Degraded" and "tenant-2" in message
