"""DatabaseMigrationSet decisions: one child per target, canaries alone, waves, halting, one approval."""

from __future__ import annotations

import json
from typing import Any

from set_support import NOW, SQL, Fleet, migration_set, typed_migration_set, with_status

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.sets import SET_LABEL
from pgwarden.operator import approval, migration_sets
from pgwarden.operator.set_children import SPEC_HASH_ANNOTATION, ChildState

Obj = dict[str, Any]
TENANTS = [f"tenant-{i}" for i in range(1, 7)]
ROLLOUT = {"canary": 1, "maxParallel": 2, "maxFailures": 1}


def decide(body: Obj, fleet: Fleet, targets: list[str] = TENANTS, **kwargs: Any) -> Any:
    decision = migration_sets.decide(typed_migration_set(body), targets, fleet.states(), NOW, **kwargs)
    fleet.apply(decision)
    return decision


def test_every_target_gets_a_child_at_once_owned_labelled_and_started_by_nobody_but_the_set() -> None:
    fleet = Fleet()
    decision = decide(migration_set(rollout=ROLLOUT), fleet)
    assert len(decision.create) == 6 and not decision.approve
    child = decision.create[0]
    assert child["kind"] == "DatabaseMigration"
    assert child["metadata"]["labels"][SET_LABEL] == "tenants"
    assert child["metadata"]["ownerReferences"][0]["kind"] == "DatabaseMigrationSet"
    assert child["metadata"]["ownerReferences"][0]["controller"] is True
    assert child["spec"]["database"] == {"secretRef": {"name": "tenant-1"}}
    assert child["spec"]["approval"] == "Manual"  # it runs only once the set approves it
    assert child["spec"]["migrations"] == {"inline": SQL}
    assert SPEC_HASH_ANNOTATION in child["metadata"]["annotations"]
    assert decision.status.targets.pending == 6


def test_the_canary_runs_alone_then_at_most_max_parallel_in_rollout_order() -> None:
    body, fleet = migration_set(rollout=ROLLOUT), Fleet()
    decide(body, fleet)
    fleet.waiting()
    assert [n for n, _ in decide(body, fleet).approve] == [fleet.children["tenant-1"].name]
    assert fleet.started() == ["tenant-1"]
    fleet.reconciled("tenant-1", "Running")
    assert not decide(body, fleet).approve, "nothing starts beside the canary"
    fleet.reconciled("tenant-1", "Succeeded", current_version="1")
    decision = decide(body, fleet)
    assert fleet.started() == ["tenant-2", "tenant-3"]
    assert decision.status.phase == "Progressing"
    fleet.reconciled("tenant-2", "Succeeded", current_version="1")
    decide(body, fleet)
    assert fleet.started() == ["tenant-3", "tenant-4"]
    for target in ("tenant-3", "tenant-4"):
        fleet.reconciled(target, "Succeeded", current_version="1")
    decide(body, fleet)
    assert fleet.started() == ["tenant-5", "tenant-6"]
    for target in ("tenant-5", "tenant-6"):
        fleet.reconciled(target, "Succeeded", current_version="1")
    done = decide(body, fleet)
    assert done.status.phase == "Complete"
    assert done.status.targets.done == "6/6"
    assert [(v.version, v.targets) for v in done.status.versions] == [("1", 6)]
    assert {c.type: c.status for c in done.status.conditions} == {
        "Progressing": "False",
        "Halted": "False",
        "Complete": "True",
    }


def test_a_failure_halts_the_set_names_the_target_and_starts_nothing_more() -> None:
    body, fleet = migration_set(rollout=ROLLOUT), Fleet()
    decide(body, fleet)
    fleet.waiting()
    decide(body, fleet)
    fleet.reconciled("tenant-1", "Succeeded", current_version="1")
    decide(body, fleet)
    fleet.reconciled("tenant-2", "RolledBack", message='migration 0001: relation "invoices" already exists')
    decision = decide(body, fleet)
    assert not decision.approve
    assert fleet.started() == ["tenant-3"], "the one running finishes; no new target starts"
    status = decision.status
    assert status.phase == "Halted"
    assert [(f.target, f.message) for f in status.failures] == [
        ("tenant-2", 'migration 0001: relation "invoices" already exists')
    ]
    assert "tenant-2" in (status.message or "")
    assert status.targets.skipped == 3 and status.targets.pending == 0
    halted = next(c for c in status.conditions if c.type == "Halted")
    assert (halted.status, halted.reason) == ("True", "MaxFailures")
    assert [e.reason for e in decision.events] == ["Halted"]
    fleet.reconciled("tenant-3", "Succeeded", current_version="1")
    assert not decide(with_status(body, decision), fleet).approve


def test_a_failed_canary_halts_the_set_whatever_max_failures_allows() -> None:
    body, fleet = migration_set(rollout={"canary": 1, "maxParallel": 5, "maxFailures": 3}), Fleet()
    decide(body, fleet)
    fleet.waiting()
    decide(body, fleet)
    fleet.reconciled("tenant-1", "Failed", message="permission denied for schema public")
    decision = decide(body, fleet)
    assert decision.status.phase == "Halted" and not decision.approve
    assert next(c for c in decision.status.conditions if c.type == "Halted").reason == "CanaryFailed"


def test_a_manual_set_waits_for_one_approval_of_generation_and_digest_then_approves_its_children() -> None:
    body, fleet = migration_set(rollout=ROLLOUT, approval="Manual"), Fleet()
    decide(body, fleet)
    fleet.waiting()
    waiting = decide(body, fleet)
    assert not waiting.approve
    assert waiting.status.phase == "AwaitingApproval"
    shown = waiting.status.approval
    assert shown is not None and shown.generation == 1 and shown.approved is False
    assert shown.digest == approval.digest(
        approval.checksums(typed_migration_set(body).spec.template.migrations.inline or [])
    )
    assert f"{APPROVED_ANNOTATION}=1-{shown.digest}" in (waiting.status.message or "")
    wrong = migration_set(rollout=ROLLOUT, approval="Manual", annotations={APPROVED_ANNOTATION: "1"})
    assert not decide(wrong, fleet).approve, "the generation alone does not approve the SQL"
    approved = migration_set(
        rollout=ROLLOUT, approval="Manual", annotations={APPROVED_ANNOTATION: f"1-{shown.digest}"}
    )
    decision = decide(approved, fleet)
    assert [n for n, _ in decision.approve] == [fleet.children["tenant-1"].name]
    assert decision.approve[0][1] == "1", "a child's approval names its own generation"
    assert decision.status.approval is not None and decision.status.approval.approved


def test_changed_sql_needs_a_new_approval_and_reruns_no_child_on_the_old_one() -> None:
    digest = approval.digest(
        approval.checksums(typed_migration_set(migration_set()).spec.template.migrations.inline or [])
    )
    approved = {APPROVED_ANNOTATION: f"1-{digest}"}
    body, fleet = (
        migration_set(rollout={"canary": 0, "maxParallel": 6}, approval="Manual", annotations=approved),
        Fleet(),
    )
    decide(body, fleet)
    fleet.waiting()
    decide(body, fleet)
    for target in TENANTS:
        fleet.reconciled(target, "Succeeded", current_version="1")
    assert decide(body, fleet).status.phase == "Complete"
    assert not decide(body, fleet).approve, "children done are not started again"

    more = [*SQL, {"name": "0002_total.sql", "sql": "ALTER TABLE invoices ADD total int;"}]
    edited = migration_set(
        rollout={"canary": 0, "maxParallel": 6},
        approval="Manual",
        inline=more,
        generation=2,
        annotations=approved,
    )
    decision = decide(edited, fleet)
    assert len(decision.replace) == 6 and not decision.approve
    assert all(child.generation == 2 for child in fleet.children.values())
    fleet.waiting()
    again = decide(edited, fleet)
    assert again.status.phase == "AwaitingApproval" and not again.approve
    assert again.status.approval is not None and again.status.approval.digest != digest


def test_a_target_that_comes_later_runs_the_approved_sql_within_the_rollout() -> None:
    body, fleet = migration_set(rollout=ROLLOUT), Fleet()
    decide(body, fleet)
    fleet.waiting()
    for _ in range(4):
        decide(body, fleet)
        for target in fleet.started():
            fleet.reconciled(target, "Succeeded", current_version="1")
    assert decide(body, fleet).status.phase == "Complete"
    seventh = [*TENANTS, "tenant-7"]
    created = decide(body, fleet, seventh)
    assert [m["spec"]["database"]["secretRef"]["name"] for m in created.create] == ["tenant-7"]
    assert created.create[0]["spec"]["migrations"] == {"inline": SQL}
    fleet.waiting()
    started = decide(body, fleet, seventh)
    assert [n for n, _ in started.approve] == [fleet.children["tenant-7"].name]


def test_a_child_whose_secret_went_is_deleted_unless_it_runs() -> None:
    body, fleet = migration_set(rollout={"canary": 0, "maxParallel": 6}), Fleet()
    decide(body, fleet)
    fleet.waiting()
    decide(body, fleet)
    fleet.reconciled("tenant-1", "Running")
    fleet.reconciled("tenant-2", "Succeeded")
    gone = fleet.children["tenant-2"].name
    decision = decide(body, fleet, TENANTS[2:])
    assert decision.delete == (gone,)
    assert "tenant-1" in fleet.children, "a running child is kept until it finishes"
    assert decision.status.targets.total == 4


def test_the_targets_not_readable_create_and_delete_nothing_and_say_why() -> None:
    body, fleet = migration_set(), Fleet()
    decide(body, fleet)
    decision = decide(body, fleet, [], targets_problem="the operator may not list Secrets in shop")
    assert not decision.create and not decision.delete
    assert decision.status.phase == "Pending"
    assert decision.status.message == "the operator may not list Secrets in shop"


def test_no_target_is_pending_and_says_so() -> None:
    decision = decide(migration_set(), Fleet(), [])
    assert decision.status.phase == "Pending"
    assert "no Secret" in (decision.status.message or "")


def test_status_stays_within_its_budget_at_a_thousand_failing_targets() -> None:
    """Counts, capped lists and a total: the details live in the children."""
    targets = [f"tenant-{'x' * 200}-{i:04d}" for i in range(1000)]
    body = migration_set(rollout={"canary": 0, "maxParallel": 1000, "maxFailures": 1000})
    fleet = Fleet()
    decide(body, fleet, targets)
    for index, target in enumerate(targets):
        fleet.reconciled(target, "Failed", message="E" * 900, current_version=str(index))
    decision = decide(body, fleet, targets)
    size = len(json.dumps(decision.status.to_status()))
    assert decision.status.failures_total == 1000 and len(decision.status.failures) == 20
    assert size < 16 * 1024, size


def test_a_set_child_awaiting_its_turn_says_so_instead_of_asking_for_its_own_approval() -> None:
    from pgwarden.api.migration import DatabaseMigration

    body = migration_set()
    manifest = migration_sets.child_spec(typed_migration_set(body), "tenant-1")
    child = DatabaseMigration.model_validate(
        {
            "metadata": {"name": "c", "namespace": "shop", "generation": 1, "labels": {SET_LABEL: "tenants"}},
            "spec": manifest,
        }
    )
    told = approval.verdict(child)
    assert not told.approved
    assert "waiting for its turn in DatabaseMigrationSet tenants" in told.message
    approved = child.model_copy(
        update={"metadata": child.metadata.model_copy(update={"annotations": {APPROVED_ANNOTATION: "1"}})}
    )
    assert approval.verdict(approved).approved


def test_child_state_reads_what_the_set_needs_of_a_child() -> None:
    from pgwarden.operator.set_children import child_state, set_uid_of

    body = {
        "metadata": {
            "name": "tenants-tenant-1-abc123",
            "generation": 2,
            "annotations": {APPROVED_ANNOTATION: "2", SPEC_HASH_ANNOTATION: "h"},
            "ownerReferences": [{"kind": "DatabaseMigrationSet", "uid": "u", "controller": True}],
        },
        "spec": {"database": {"secretRef": {"name": "tenant-1"}}},
        "status": {"phase": "Succeeded", "observedGeneration": 2, "currentVersion": "3"},
    }
    state = child_state(body)
    assert state == ChildState(
        name="tenants-tenant-1-abc123",
        target="tenant-1",
        generation=2,
        spec_hash="h",
        approved="2",
        phase="Succeeded",
        observed_generation=2,
        current_version="3",
    )
    assert state.succeeded and state.released
    assert set_uid_of(body) == "u"


def test_a_rehearsal_in_the_template_waits_for_the_childs_turn_and_comes_with_its_start() -> None:
    """A child rehearses before its approval, so the set holds the rehearsal back until the child's turn, then
    gives the whole spec and the approval of the generation it makes in one write."""
    rehearsal = {"backupRef": {"name": "tenant-template-backup"}}
    body, fleet = migration_set(rollout={"canary": 1, "maxParallel": 2}, rehearsal=rehearsal), Fleet()
    created = decide(body, fleet)
    assert all("rehearsal" not in manifest["spec"] for manifest in created.create)
    fleet.waiting()
    started = decide(body, fleet)
    assert not started.approve and not started.replace
    (release,) = started.release
    assert release.name == fleet.children["tenant-1"].name
    assert fleet.specs["tenant-1"]["rehearsal"]["backupRef"]["name"] == "tenant-template-backup"
    assert release.approved == "2", "the approval names the generation the whole spec makes"
    assert fleet.children["tenant-1"].released
    assert "rehearsal" not in fleet.specs["tenant-2"], "the others wait without theirs"
    again = decide(body, fleet)
    assert not (again.release or again.replace or again.approve), "a released child is not held back again"
    fleet.reconciled("tenant-1", "Succeeded", current_version="1")
    wave = decide(body, fleet)
    assert sorted(item.name for item in wave.release) == sorted(
        fleet.children[t].name for t in ("tenant-2", "tenant-3")
    )
