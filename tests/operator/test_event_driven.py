"""The event-driven core's pure parts: what the watch-fed cache keeps, when a resource needs its next look,
and when a reconcile can skip listing pods."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from operator_runs import BACKUP_SUCCEEDED, NOW, finished_pod, job, written

from pgwarden.operator import backups, naming, reconcile
from pgwarden.operator.cache import Cache, index_entry
from pgwarden.operator.deadlines import Deadlines, next_look
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
UID = "0f0e0d0c-1111-2222-3333-444455556666"


def labelled(obj: Obj, uid: str = UID) -> Obj:
    obj["metadata"]["labels"] = {**obj["metadata"].get("labels", {}), naming.LABEL_RESOURCE_UID: uid}
    obj["spec"] = {
        "template": {"spec": {"containers": [{"env": [{"name": "PGWARDEN_TASK", "value": "x" * 9000}]}]}}
    }
    return obj


def test_the_cache_keeps_jobs_by_owner_without_their_pod_template() -> None:
    entry = index_entry(labelled(job("shop-backup-1-abc", state="complete")))
    assert entry is not None and list(entry) == [UID]
    kept = entry[UID]
    assert "spec" not in kept and kept["metadata"]["name"] == "shop-backup-1-abc"
    assert observe(kept, []).succeeded
    assert index_entry(job("not-ours")) is None
    cache = Cache(jobs={UID: [kept]}, cronjobs={})
    assert cache.jobs_of(UID) == [kept] and cache.jobs_of("other") == [] and cache.cronjobs_of(UID) == []


def test_only_waiting_or_running_resources_are_polled_and_others_wait_for_their_own_deadline() -> None:
    assert next_look("Running", None, NOW, 15) == NOW + timedelta(seconds=15)
    assert next_look("Pending", NOW + timedelta(seconds=5), NOW, 15) == NOW + timedelta(seconds=5)
    for phase in ("Succeeded", "Failed", "Cancelled", "AwaitingApproval", "Scheduled", "Suspended"):
        assert next_look(phase, None, NOW, 15) is None
    assert next_look("Scheduled", NOW + timedelta(hours=3), NOW, 15) == NOW + timedelta(hours=3)


def test_a_scheduled_backup_is_next_looked_at_when_it_turns_stale_or_its_run_is_due(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")  # 02:00 Berlin, staleAfter 26h
    body["status"] = {
        "lastSuccessfulTime": "2025-03-01T01:00:30Z",
        "lastBackup": {"id": "x", "location": "y", "completedAt": "2025-03-01T01:00:30Z"},
    }
    decision = written(backups.decide(read(body), [], None, SETTINGS, NOW))
    # 2025-03-02T01:00Z is the next run; stale only at 2025-03-02T03:00:30Z
    assert decision.deadline == datetime(2025, 3, 2, 1, 0, tzinfo=UTC) + backups.SCHEDULE_GRACE
    body["spec"]["suspend"] = True
    suspended = written(backups.decide(read(body), [], None, SETTINGS, NOW))
    assert suspended.deadline == datetime(2025, 3, 2, 3, 0, 31, tzinfo=UTC)


def test_deadlines_fire_once_each_and_a_new_time_replaces_the_old() -> None:
    fired: list[tuple[str, str, str]] = []
    done = threading.Event()
    clock = [NOW]

    def fire(key: tuple[str, str, str]) -> None:
        fired.append(key)
        if len(fired) == 2:
            done.set()

    deadlines = Deadlines(fire, clock=lambda: clock[0])
    deadlines.set(("DatabaseBackup", "shop", "a"), NOW + timedelta(seconds=1))
    deadlines.set(("DatabaseBackup", "shop", "b"), NOW + timedelta(hours=1))
    deadlines.set(("DatabaseBackup", "shop", "b"), NOW + timedelta(seconds=2))  # replaces the hour
    deadlines.set(("DatabaseBackup", "shop", "c"), NOW + timedelta(seconds=1))
    deadlines.forget(("DatabaseBackup", "shop", "c"))
    assert fired == []
    clock[0] = NOW + timedelta(seconds=3)
    deadlines.set(("DatabaseBackup", "shop", "d"), None)  # wakes the thread
    assert done.wait(5)
    assert fired == [("DatabaseBackup", "shop", "a"), ("DatabaseBackup", "shop", "b")]
    assert deadlines.pending() == {}


def test_pods_are_listed_only_when_they_can_tell_something_new(resource: Callable[..., Obj]) -> None:
    name = naming.job_name("DatabaseMigration", "shop", UID, 1)
    body = resource("migration-shop.yaml", "DatabaseMigration")

    def migration(status: Obj, generation: int = 1) -> Any:
        return read(dict(body, status=status, metadata=dict(body["metadata"], generation=generation)))

    done = {"phase": "Succeeded", "job": name, "observedGeneration": 1}
    assert reconcile.quiet(migration(done), [job(name, state="complete")], name)
    assert not reconcile.quiet(
        migration({"phase": "Running", "job": name}), [job(name, state="complete")], name
    )
    assert not reconcile.quiet(migration(done), [job(name)], name)  # still active
    assert reconcile.quiet(migration({}, 2), [job(name, state="complete")], "shop-migrate-2-x")

    body = resource("backup-nightly.yaml", "DatabaseBackup")
    finished = [observe(job("nightly-1", state="complete"), [finished_pod(BACKUP_SUCCEEDED)])]
    recorded = read(
        dict(body, status=written(backups.decide(read(body), finished, None, SETTINGS, NOW)).status)
    )
    assert reconcile.quiet(recorded, [job("nightly-1", state="complete")], "-")
    assert not reconcile.quiet(recorded, [job("nightly-2", state="complete")], "-")
    assert not reconcile.quiet(recorded, [job("nightly-2")], "-")
