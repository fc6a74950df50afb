"""A DatabaseMigrationSet's drift checks (spec.drift), decided: CronJobs owned by the set with each target's
Secret only by reference, and their Jobs' reports summed into status.drift, the Drifted condition and one
Event per new finding. Pure: Jobs and Pods as the apiserver would show them."""

from __future__ import annotations

import json
from typing import Any

from operator_runs import finished_pod, job
from set_support import NOW, Fleet, migration_set, typed_migration_set, with_status

from pgwarden.operator import migration_sets, set_drift
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.policy import Policy
from pgwarden.operator.reconcile import observe_runs
from pgwarden.operator.set_drift import DriftInputs
from pgwarden.operator.set_status import SetDecision

Obj = dict[str, Any]
TENANTS = [f"tenant-{i}" for i in range(1, 7)]
ROLLOUT = {"canary": 1, "maxParallel": 2, "maxFailures": 1}
SETTINGS = JobSettings(image="pgwarden:test")
NOTHING_RAN = DriftInputs()
CREDENTIALS = ("DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD")


def drifting(schedule: str = "17 * * * *", **changes: Any) -> Obj:
    body = migration_set(**{"rollout": ROLLOUT, **changes})
    body["spec"]["drift"] = {"schedule": schedule}
    return body


def decide(
    body: Obj,
    fleet: Fleet,
    inputs: DriftInputs = NOTHING_RAN,
    targets: list[str] = TENANTS,
    settings: JobSettings = SETTINGS,
) -> SetDecision[Any]:
    mset = typed_migration_set(body)
    decision = migration_sets.decide(mset, targets, fleet.states(), NOW)
    fleet.apply(decision)
    return set_drift.with_drift(decision, mset, targets, inputs, settings, NOW)


def container(cronjob: Obj) -> Obj:
    (only,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def task_of(cronjob: Obj) -> Obj:
    env = {item["name"]: item for item in container(cronjob)["env"]}
    return dict(json.loads(env["PGWARDEN_TASK"]["value"]))


def ran(cronjob: Obj, name: str, report: Obj | None, state: str = "complete") -> tuple[Obj, Obj]:
    """A Job the CronJob made (its labels) and its finished Pod with `report` as termination message."""
    made = job(name, state=state)
    made["metadata"]["labels"].update(cronjob["spec"]["jobTemplate"]["metadata"]["labels"])
    pod = finished_pod(report, exit_code=0 if state == "complete" else 1)
    pod["metadata"]["labels"] = {"batch.kubernetes.io/job-name": name}
    return made, pod


def finished(
    cronjobs: list[Obj], jobs_and_pods: list[tuple[Obj, Obj]], pods_read: bool = True
) -> DriftInputs:
    jobs = [made for made, _ in jobs_and_pods]
    runs = observe_runs(jobs, [pod for _, pod in jobs_and_pods]) if pods_read else None
    return DriftInputs(cronjobs=cronjobs, jobs=jobs, runs=runs)


def report(*drifted: str, targets: int = 6, unchecked: list[str] | None = None) -> Obj:
    findings: list[Obj] = [
        {
            "target": name,
            "verdict": "Drifted",
            "version": "0001",
            "against": "lastRun",
            "differences": 1,
            "message": "1 difference(s) since its last migration run (version 0001): column public.invoices.note "
            "added since the last run",
        }
        for name in drifted
    ]
    findings += [
        {"target": name, "verdict": "Unreachable", "message": "connection refused"}
        for name in unchecked or []
    ]
    gone = len(drifted) + len(unchecked or [])
    return {
        "outcome": "Succeeded",
        "counts": {
            "targets": targets,
            "inSync": targets - gone,
            "drifted": len(drifted),
            "unchecked": gone - len(drifted),
        },
        "findings": findings,
    }


def test_one_cronjob_per_25_targets_owned_by_the_set_each_secret_only_by_reference() -> None:
    targets = [f"tenant-{i:02d}" for i in range(30, 0, -1)]  # rollout order: tenant-30 first
    decision = decide(drifting(), Fleet(), targets=targets)
    first, second = decision.apply_cronjobs
    assert [len(task_of(c)["drift"]["targets"]) for c in (first, second)] == [25, 5]
    assert task_of(first)["drift"]["targets"] == sorted(targets)[:25], "grouped by name, not by rollout"
    assert {task_of(c)["drift"]["reference"] for c in (first, second)} == {"tenant-30"}, "the first canary"
    for cronjob in (first, second):
        meta = cronjob["metadata"]
        assert len(meta["name"]) <= 52 and meta["labels"]["pgwarden.io/task"] == "drift"
        assert meta["ownerReferences"][0]["kind"] == "DatabaseMigrationSet"
        assert meta["ownerReferences"][0]["name"] == "tenants"
        assert cronjob["spec"]["schedule"] == "17 * * * *"
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert container(cronjob)["command"] == ["pgwarden", "job", "drift"]
    env = {item["name"]: item for item in container(first)["env"]}
    assert not set(CREDENTIALS) & set(env), "no credentials libpq would lend every target"
    assert env["PGWARDEN_TARGET_0_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "tenant-01",
        "key": "uri",
        "optional": True,
    }
    assert env["PGWARDEN_TARGET_24_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "tenant-25"
    assert env["PGWARDEN_REFERENCE_HOST"]["valueFrom"]["secretKeyRef"]["name"] == "tenant-30"
    values = [item["value"] for item in container(first)["env"] if "value" in item]
    assert not any("tenant-" in v and "@" in v for v in values)
    assert not decision.delete_cronjobs
    assert decision.status.drift.reports is None
    drifted = next(c for c in decision.status.conditions if c.type == "Drifted")
    assert (drifted.status, drifted.reason) == ("Unknown", "NotCheckedYet")


def test_a_finished_check_names_the_drifted_target_once_and_deciding_again_changes_nothing() -> None:
    fleet = Fleet()
    body = drifting()
    first = decide(body, fleet)
    (cronjob,) = first.apply_cronjobs
    body = with_status(body, first)
    check = ran(cronjob, "tenants-drift-0-abc-29001", report("tenant-3"))
    inputs = finished([cronjob], [check])
    assert set_drift.pods_needed(typed_migration_set(body), TENANTS, inputs.jobs)

    found = decide(body, fleet, inputs)
    drift = found.status.drift
    assert (drift.targets, drift.in_sync, drift.drifted, drift.unchecked) == (6, 5, 1, 0)
    (named,) = drift.drifted_targets
    assert named.target == "tenant-3"
    assert "column public.invoices.note" in (named.message or "")
    assert drift.checked_at is not None and drift.reports
    condition = next(c for c in found.status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("True", "SchemaDrift")
    assert condition.message.startswith("1 of 6 target(s) drifted: tenant-3 (1 difference(s) since")
    assert found.status.conditions[-1].type == "Drifted", "after the rollout's own conditions"
    assert [(e.type, e.reason) for e in found.events] == [("Warning", "SchemaDrift")]
    assert not found.apply_cronjobs, "the CronJob is current"

    body = with_status(body, found)
    unread = finished([cronjob], [check], pods_read=False)
    assert not set_drift.pods_needed(typed_migration_set(body), TENANTS, unread.jobs)
    again = decide(body, fleet, unread)
    assert not (again.events or again.apply_cronjobs or again.delete_cronjobs)
    assert again.status.drift == found.status.drift
    assert again.status.conditions[-1] == found.status.conditions[-1]

    # The next run finds none: the condition turns False, announced once.
    later, pod = ran(cronjob, "tenants-drift-0-abc-29002", report())
    later["status"]["completionTime"] = "2025-03-01T12:59:30Z"
    cleared = decide(body, fleet, finished([cronjob], [check, (later, pod)]))
    assert cleared.status.drift.drifted == 0 and cleared.status.drift.reports != drift.reports
    condition = next(c for c in cleared.status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("False", "NoDrift")
    assert [(e.type, e.reason) for e in cleared.events] == [("Normal", "NoDrift")]


def test_a_drift_job_that_left_no_report_leaves_its_targets_unchecked_and_says_why() -> None:
    fleet = Fleet()
    body = drifting()
    first = decide(body, fleet)
    (cronjob,) = first.apply_cronjobs
    check = ran(cronjob, "tenants-drift-0-abc-1", None, state="failed")
    status = decide(with_status(body, first), fleet, finished([cronjob], [check])).status
    assert (status.drift.targets, status.drift.unchecked, status.drift.drifted) == (6, 6, 0)
    assert [note.target for note in status.drift.unchecked_targets] == TENANTS[:5], "5 named, all counted"
    assert "tenants-drift-0-abc-1 checked nothing" in (status.drift.unchecked_targets[0].message or "")
    condition = next(c for c in status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("False", "NoDrift")
    assert "6 not checked" in condition.message


def test_unreachable_targets_are_named_apart_from_the_drifted_ones() -> None:
    fleet = Fleet()
    body = drifting()
    first = decide(body, fleet)
    (cronjob,) = first.apply_cronjobs
    check = ran(cronjob, "j", report("tenant-2", unchecked=["tenant-5"]))
    status = decide(with_status(body, first), fleet, finished([cronjob], [check])).status
    assert [n.target for n in status.drift.drifted_targets] == ["tenant-2"]
    assert [(n.target, n.message) for n in status.drift.unchecked_targets] == [
        ("tenant-5", "connection refused")
    ]
    assert status.conditions[-1].message.endswith("; 1 not checked (tenant-5: connection refused)")


def test_a_new_target_replaces_the_cronjob_of_its_group_and_a_group_gone_is_deleted() -> None:
    fleet = Fleet()
    body = drifting()
    first = decide(body, fleet)
    (cronjob,) = first.apply_cronjobs
    body = with_status(body, first)
    grown = decide(body, fleet, DriftInputs(cronjobs=[cronjob]), targets=[*TENANTS, "tenant-7"])
    (replaced,) = grown.apply_cronjobs
    assert replaced["metadata"]["name"] == cronjob["metadata"]["name"]
    assert task_of(replaced)["drift"]["targets"] == [*TENANTS, "tenant-7"]

    many = [f"t-{i:02d}" for i in range(30)]
    two = decide(body, Fleet(), targets=many).apply_cronjobs
    fewer = decide(body, Fleet(), DriftInputs(cronjobs=list(two)), targets=many[:20])
    assert fewer.delete_cronjobs == (two[1]["metadata"]["name"],)


def test_without_spec_drift_there_is_no_cronjob_and_removing_it_deletes_them_and_the_condition() -> None:
    fleet = Fleet()
    plain = decide(migration_set(rollout=ROLLOUT), fleet)
    assert not plain.apply_cronjobs and plain.status.drift is None
    assert "Drifted" not in {c.type for c in plain.status.conditions}

    body = drifting()
    first = decide(body, fleet)
    (cronjob,) = first.apply_cronjobs
    removed = migration_set(rollout=ROLLOUT, status=with_status(body, first)["status"])
    decision = decide(removed, fleet, DriftInputs(cronjobs=[cronjob]))
    assert decision.delete_cronjobs == (cronjob["metadata"]["name"],)
    assert "drift" not in decision.status.to_status()
    assert "Drifted" not in {c.type for c in decision.status.conditions}


def test_a_jobtemplate_the_policy_refuses_runs_no_check_and_says_so() -> None:
    body = drifting()
    body["spec"]["template"]["jobTemplate"] = {"image": "registry.example/other:1"}
    decision = decide(body, Fleet(), settings=JobSettings(image="pgwarden:test", policy=Policy()))
    assert not decision.apply_cronjobs
    condition = next(c for c in decision.status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("Unknown", "PolicyDenied")
    assert "spec.jobTemplate.image registry.example/other:1 is not allowed" in condition.message


def test_the_status_with_drift_stays_within_its_budget_at_a_thousand_targets() -> None:
    targets = [f"tenant-{'x' * 200}-{i:04d}" for i in range(1000)]
    body = drifting(rollout={"canary": 0, "maxParallel": 1000, "maxFailures": 1000})
    fleet = Fleet()
    first = decide(body, fleet, targets=targets)
    assert len(first.apply_cronjobs) == 40
    for index, target in enumerate(targets):
        fleet.reconciled(target, "Failed", message="E" * 900, current_version=str(index))
    checks = []
    for cronjob in first.apply_cronjobs:
        group = task_of(cronjob)["drift"]["targets"]
        findings = report(*group[:20], targets=len(group), unchecked=group[20:])
        for finding in findings["findings"]:
            finding["message"] = "M" * 200
        checks.append(ran(cronjob, cronjob["metadata"]["name"] + "-1", findings))
    decision = decide(with_status(body, first), fleet, finished(list(first.apply_cronjobs), checks), targets)
    drift = decision.status.drift
    assert (drift.targets, drift.drifted, drift.unchecked) == (1000, 800, 200)
    assert (len(drift.drifted_targets), len(drift.unchecked_targets)) == (10, 5)
    size = len(json.dumps(decision.status.to_status()))
    assert size < 24 * 1024, size  # 16 KiB without drift checks (test_migration_sets)
