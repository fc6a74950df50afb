"""Idempotence of the set kinds, in every phase: a set's decision carried out and decided again does nothing
the first did (no child created, replaced or deleted again, no approval written again, no Event again), and
once nothing was created the next decision does nothing at all and writes the same status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from set_support import (
    NOW,
    Fleet,
    backup_set,
    migration_set,
    typed_backup_set,
    typed_migration_set,
    with_status,
)

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.operator import backup_sets, migration_sets
from pgwarden.operator.set_status import SetDecision

Obj = dict[str, Any]
TENANTS = [f"tenant-{i}" for i in range(1, 7)]
ROLLOUT = {"canary": 1, "maxParallel": 2, "maxFailures": 1}
Case = Callable[[], tuple[Obj, Fleet]]


def decide(body: Obj, fleet: Fleet) -> SetDecision[Any]:
    if body["kind"] == "DatabaseBackupSet":
        return backup_sets.decide(typed_backup_set(body), TENANTS, fleet.states(), NOW)
    return migration_sets.decide(typed_migration_set(body), TENANTS, fleet.states(), NOW)


def settle(body: Obj, fleet: Fleet, *moves: Callable[[Fleet], None]) -> Obj:
    """Decide and carry out until the children exist, then let each move happen and decide again."""
    for move in (lambda f: None, Fleet.waiting, *moves):
        move(fleet)
        decision = decide(body, fleet)
        fleet.apply(decision)
        body = with_status(body, decision)
    return body


def succeed(*targets: str) -> Callable[[Fleet], None]:
    return lambda fleet: [fleet.reconciled(t, "Succeeded", current_version="1") for t in targets] and None


def fail(target: str) -> Callable[[Fleet], None]:
    return lambda fleet: fleet.reconciled(target, "RolledBack", message="relation already exists")


def new_set() -> tuple[Obj, Fleet]:
    return migration_set(rollout=ROLLOUT), Fleet()


def awaiting_approval() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    return settle(migration_set(rollout=ROLLOUT, approval="Manual"), fleet), fleet


def approved_manual() -> tuple[Obj, Fleet]:
    body = migration_set(rollout=ROLLOUT, approval="Manual")
    shown = migration_sets.content(typed_migration_set(body), None)
    fleet = Fleet()
    body = settle(body, fleet)
    body["metadata"]["annotations"] = {APPROVED_ANNOTATION: f"1-{shown.digest}"}
    return body, fleet


def canary_running() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    return settle(migration_set(rollout=ROLLOUT), fleet, lambda f: f.reconciled("tenant-1", "Running")), fleet


def wave_running() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    return settle(migration_set(rollout=ROLLOUT), fleet, succeed("tenant-1")), fleet


def halted() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    return settle(migration_set(rollout=ROLLOUT), fleet, succeed("tenant-1"), fail("tenant-2")), fleet


def complete() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    waves = [
        succeed("tenant-1"),
        succeed("tenant-2", "tenant-3"),
        succeed("tenant-4", "tenant-5"),
        succeed("tenant-6"),
    ]
    return settle(migration_set(rollout=ROLLOUT), fleet, *waves), fleet


def finished_with_failures() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    body = migration_set(rollout={"canary": 0, "maxParallel": 6, "maxFailures": 3})
    moves = [succeed(*TENANTS[1:]), fail("tenant-1")]
    return settle(body, fleet, *moves), fleet


def template_changed() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    body = settle(migration_set(rollout=ROLLOUT), fleet, succeed(*TENANTS))
    edited = migration_set(
        rollout=ROLLOUT,
        inline=[{"name": "0002_x.sql", "sql": "SELECT 1;"}],
        generation=2,
        status=body["status"],
    )
    return edited, fleet


def rehearsing_wave() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    body = migration_set(rollout=ROLLOUT, rehearsal={"backupRef": {"name": "template-backup"}})
    return settle(body, fleet, succeed("tenant-1")), fleet


def backups_scheduled() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    ready = {"Ready": "True", "Stale": "False"}
    moves = [lambda f: [f.reconciled(t, "Scheduled", conditions=ready) for t in TENANTS] and None]
    return settle(backup_set(stagger="1h"), fleet, *moves), fleet


def backups_degraded() -> tuple[Obj, Fleet]:
    fleet = Fleet()
    stale = {"Ready": "True", "Stale": "True"}
    moves = [
        lambda f: (
            [
                f.reconciled(t, "Scheduled", conditions=stale, last_backup="2025-02-01T02:00:00Z")
                for t in TENANTS
            ]
            and None
        )
    ]
    return settle(backup_set(), fleet, *moves), fleet


CASES: dict[str, Case] = {
    "new": new_set,
    "awaiting approval": awaiting_approval,
    "approved (Manual)": approved_manual,
    "canary running": canary_running,
    "wave running": wave_running,
    "halted": halted,
    "complete": complete,
    "finished with failures": finished_with_failures,
    "template changed": template_changed,
    "rehearsing wave": rehearsing_wave,
    "backups scheduled": backups_scheduled,
    "backups degraded": backups_degraded,
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_deciding_again_does_nothing_the_first_decision_did(case: Case) -> None:
    body, fleet = case()
    first = decide(body, fleet)
    fleet.apply(first)
    second = decide(with_status(body, first), fleet)
    assert not {m["metadata"]["name"] for m in first.create} & {m["metadata"]["name"] for m in second.create}
    assert not {r.name for r in first.replace} & {r.name for r in second.replace}
    assert not set(first.approve) & set(second.approve), "an approval is written once"
    assert not {r.name for r in first.release} & {r.name for r in second.release}
    assert not set(first.delete) & set(second.delete)
    assert not second.events, "a transition is announced once"
    if not first.create and not first.replace and not first.release:
        fleet.apply(second)
        third = decide(with_status(body, second), fleet)
        assert not (third.create or third.replace or third.delete or third.events)
        assert third.status.to_status() == second.status.to_status()


def test_the_status_shows_each_phase_the_cases_are_named_for() -> None:
    phases = {name: decide(*case()).status.phase for name, case in CASES.items()}
    assert phases == {
        "new": "Progressing",
        "awaiting approval": "AwaitingApproval",
        "approved (Manual)": "Progressing",
        "canary running": "Progressing",
        "wave running": "Progressing",
        "halted": "Halted",
        "complete": "Complete",
        "finished with failures": "Failed",
        "template changed": "Progressing",
        "rehearsing wave": "Progressing",
        "backups scheduled": "Ready",
        "backups degraded": "Degraded",
    }
