"""DatabaseBackup: one-time Jobs, scheduled CronJobs, history, lastBackup, Stale and Suspended."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from operator_runs import BACKUP_SUCCEEDED, NOW, finished_pod, job, pod, written
from pydantic import ValidationError

from pgwarden.api.backup import NEVER_FIRES_PATTERN, DatabaseBackup, DatabaseBackupStatus
from pgwarden.operator import backups, naming, reconcile
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import ObservedRun, observe
from pgwarden.operator.resources import read
from pgwarden.operator.status import Decision, status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
UID = "0f0e0d0c-1111-2222-3333-444455556666"  # conftest.with_metadata's


def decide(
    body: Obj, runs: list[ObservedRun] | None = None, cronjob: Obj | None = None, now: datetime = NOW
) -> Decision:
    decision = written(backups.decide(read(body), runs or [], cronjob, SETTINGS, now))
    DatabaseBackupStatus.model_validate(decision.status)
    return decision


def cond(decision: Decision, kind: str) -> Obj:
    found = next((c for c in decision.status["conditions"] if c["type"] == kind), None)
    assert found is not None, kind
    return found


def test_a_one_time_backup_runs_one_job_and_reports_location_size_and_counts(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup")
    first = decide(body)
    assert first.create is not None and first.create["kind"] == "Job"
    assert first.status["phase"] == "Pending"
    name = first.create["metadata"]["name"]

    body["status"] = first.status
    done = decide(body, [observe(job(name, state="complete"), [finished_pod(BACKUP_SUCCEEDED)])])
    assert done.create is None
    status = done.status
    assert status["phase"] == "Succeeded"
    assert status["lastBackup"] == {
        "id": "20250301T115900Z",
        "location": "s3://pgwarden-backups/shop/20250301T115900Z",
        "sizeBytes": 123456,
        "size": "120.6 KiB",  # what kubectl get shows in the Size column
        "sha256": "e" * 64,
        "verified": True,
        "tables": 3,
        "rows": 1200,
        "startedAt": "2025-03-01T11:59:00Z",
        "completedAt": "2025-03-01T11:59:20Z",
        "durationSeconds": 20.0,
    }
    assert status["lastSuccessfulTime"] == "2025-03-01T11:59:20Z"
    assert status["retained"] == 4
    assert status["history"][0]["outcome"] == "Succeeded"
    assert "120.6 KiB, 3 tables, 1200 rows" in status["message"]
    assert cond(done, "Ready")["status"] == "True"
    assert [e.reason for e in done.events] == ["BackupSucceeded"]
    assert done.finished[0].size_bytes == 123456

    body["status"] = status
    again = decide(body, [observe(job(name, state="complete"), [finished_pod(BACKUP_SUCCEEDED)])])
    assert again.events == () and again.create is None


def test_a_schedule_creates_a_cronjob_and_updates_it_only_when_the_spec_changes(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    first = decide(body)
    assert first.create is not None and first.create["kind"] == "CronJob"
    assert first.status["phase"] == "Scheduled"
    assert first.status["nextScheduleTime"] == "2025-03-02T01:00:00Z"  # 02:00 in Berlin
    assert cond(first, "Suspended")["status"] == "False"
    assert decide(body, cronjob=first.create).create is None

    body["spec"]["suspend"] = True
    body["metadata"]["generation"] = 2
    suspended = decide(body, cronjob=first.create)
    assert suspended.create is not None and suspended.create["spec"]["suspend"] is True
    assert suspended.status["phase"] == "Suspended"
    assert cond(suspended, "Suspended")["status"] == "True"
    assert "nextScheduleTime" not in suspended.status


def test_scheduled_runs_fill_the_history_newest_first_and_capped(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    runs = []
    for day in range(12):
        report = dict(
            BACKUP_SUCCEEDED,
            completedAt=f"2025-02-{day + 10:02d}T01:00:30Z",
            backup=dict(BACKUP_SUCCEEDED["backup"], id=f"2025021{day}"),
        )
        runs.append(observe(job(f"nightly-{day}", state="complete"), [finished_pod(report)]))
    failed = observe(
        job("nightly-failed", state="failed"),
        [
            finished_pod(
                {"outcome": "Failed", "error": {"message": "pg_dump: connection refused"}}, exit_code=1
            )
        ],
    )
    decision = decide(body, [*runs, failed])
    history = decision.status["history"]
    assert len(history) == backups.HISTORY_LIMIT
    assert history[0]["completedAt"] >= history[1]["completedAt"]
    assert decision.status["lastBackup"]["completedAt"] == "2025-02-21T01:00:30Z"
    assert sum(e.reason == "BackupFailed" for e in decision.events) == 1


def test_a_failed_run_is_a_clear_failure_until_the_next_success(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    failed = observe(
        job("nightly-1", state="failed"),
        [
            finished_pod(
                {"outcome": "Failed", "error": {"message": "pg_dump 15 is older than the server (18)"}},
                exit_code=2,
            )
        ],
    )
    decision = decide(body, [failed])
    assert decision.status["phase"] == "Failed"
    assert "older than the server" in decision.status["message"]
    assert cond(decision, "Ready")["status"] == "False"


def test_stale_turns_true_when_no_backup_succeeded_within_stale_after(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")  # staleAfter: 26h
    body["status"] = {
        "lastSuccessfulTime": "2025-02-27T01:00:00Z",
        "lastBackup": {"id": "x", "location": "y", "completedAt": "2025-02-27T01:00:00Z"},
    }
    decision = decide(body)
    assert cond(decision, "Stale")["status"] == "True"
    assert [e.reason for e in decision.events] == ["Stale"]
    fresh = decide(body, now=NOW - timedelta(days=2))
    assert cond(fresh, "Stale")["status"] == "False"


def test_without_stale_after_a_schedule_is_stale_after_two_intervals(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    del body["spec"]["staleAfter"]
    assert backups.stale_after(DatabaseBackup.model_validate(body), NOW) == timedelta(days=2)


def test_a_running_scheduled_job_shows_running_and_a_stuck_one_why(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    running = decide(body, [observe(job("nightly-9"), [pod()])])
    assert running.status["phase"] == "Running"
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "pgwarden:nope"'}
    stuck = decide(body, [observe(job("nightly-9"), [pod(waiting=waiting, phase="Pending")])])
    assert stuck.status["phase"] == "Pending"
    assert "ImagePullBackOff" in stuck.status["message"]
    assert [e.reason for e in stuck.events] == ["CannotStart"]


def test_dropping_the_schedule_deletes_the_cronjob(resource: Callable[..., Obj]) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup")
    cronjob = {"metadata": {"name": naming.cronjob_name("shop-backup", "u")}}
    decision = decide(body, cronjob=cronjob)
    assert decision.delete_cronjob == cronjob["metadata"]["name"]


def _runs_of_generations(count: int) -> list[ObservedRun]:
    """`count` finished one-time backup Jobs, one per generation, each a day apart (one-time Jobs stay)."""
    runs = []
    for day in range(count):
        report = dict(
            BACKUP_SUCCEEDED,
            startedAt=f"2025-02-{day + 1:02d}T01:00:00Z",
            completedAt=f"2025-02-{day + 1:02d}T01:00:30Z",
            backup=dict(BACKUP_SUCCEEDED["backup"], id=f"202502{day + 1:02d}"),
        )
        name = naming.job_name("DatabaseBackup", "shop-backup", UID, day + 1)
        runs.append(observe(job(name, state="complete", generation=day + 1), [finished_pod(report)]))
    return runs


def test_more_finished_jobs_than_the_history_keeps_are_each_announced_and_counted_once(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup", generation=15)
    runs = _runs_of_generations(15)
    first = decide(body, runs)
    assert [e.reason for e in first.events].count("BackupSucceeded") == 15
    assert len(first.finished) == 15
    assert len(first.status["history"]) == backups.HISTORY_LIMIT

    for _ in range(2):  # every later reconcile sees the same Jobs: nothing new to post or count
        body["status"] = first.status
        again = decide(body, runs)
        assert again.events == () and again.finished == () and again.create is None
        assert again.status["history"] == first.status["history"]


def test_a_new_run_after_a_full_history_is_still_announced(resource: Callable[..., Obj]) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup", generation=16)
    runs = _runs_of_generations(16)
    body["status"] = decide(body, runs[:15]).status
    later = decide(body, runs)
    assert [e.reason for e in later.events] == ["BackupSucceeded"]
    assert [f.outcome for f in later.finished] == ["Succeeded"]
    assert later.status["history"][0]["job"] == runs[15].job


NEVER = ["0 0 30 2 *", "0 0 31 2 *", "15 3 30,31 feb ?", "0 0 31 4,6,9,11 *", "0 0 31 Apr *"]


@pytest.mark.parametrize("schedule", [*NEVER, "0 0 31 2,4 1-5 0"])
def test_a_schedule_that_never_fires_is_refused_with_a_clear_reason(
    resource: Callable[..., Obj], schedule: str
) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["schedule"] = schedule
    with pytest.raises(ValidationError) as refused:
        DatabaseBackup.model_validate(body)
    text = str(refused.value)
    assert "never fires" in text or "5 fields" in text


@pytest.mark.parametrize("schedule", NEVER)
def test_the_crd_refuses_the_never_firing_schedules_it_can_see(schedule: str) -> None:
    assert re.fullmatch(NEVER_FIRES_PATTERN, schedule)


@pytest.mark.parametrize("schedule", ["0 0 29 2 *", "0 0 31 * *", "0 0 30 2 1", "0 0 31 1,4 *", "@daily"])
def test_schedules_that_fire_even_rarely_are_accepted(resource: Callable[..., Obj], schedule: str) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["schedule"] = schedule
    DatabaseBackup.model_validate(body)
    assert not re.fullmatch(NEVER_FIRES_PATTERN, schedule)


def test_a_never_firing_schedule_past_the_apiserver_is_a_condition_posted_once(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["schedule"] = "0 0 31 4,6 *"
    with pytest.raises(ValidationError) as refused:
        backups.decide(read(body), [], None, SETTINGS, NOW)
    first = written(reconcile.invalid_spec(body, refused.value, NOW))
    assert first.status["phase"] == "Failed" and "never fires" in first.status["message"]
    assert cond(first, "Ready")["reason"] == "InvalidSpec"
    assert [e.reason for e in first.events] == ["InvalidSpec"]
    body["status"] = first.status
    again = written(reconcile.invalid_spec(body, refused.value, NOW))
    assert again.events == () and again.create is None and status_patch(first.status, again.status) == {}
