"""One reconciliation of one resource: read it and its Jobs, decide (pure), then carry the decision out.

Every trigger (create, update, resume, a Job's change, the periodic timer) ends here, so a restarted
operator, a missed watch event or two triggers at once all converge on the same state.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pgwarden.operator import backups, metrics, migrations, naming, restores
from pgwarden.operator.cache import Cache
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.deadlines import Deadlines, next_look
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.observe import ObservedRun, observe, parse_time
from pgwarden.operator.status import TERMINAL_PHASES, WARNING, Decision, Event, clip, stamp, status_patch

log = logging.getLogger(__name__)
Obj = dict[str, Any]
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


@dataclass
class Context:
    """What reconciliations share: the API, the Job settings, how Events are posted, what the watches
    told (`cache`; None: LIST instead) and when each resource needs its next look (`deadlines`)."""

    kube: Kube
    settings: JobSettings
    post_event: Callable[[Obj, Event], None]
    cache: Cache | None = None
    deadlines: Deadlines | None = None
    poll_seconds: float = 15.0


_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _lock(kind: str, namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks[f"{kind}/{namespace}/{name}"]


def forget(kind: str, namespace: str, name: str, deadlines: Deadlines | None = None) -> None:
    """Release what the operator keeps for a resource once it is gone: its lock, deadline, metric series."""
    if deadlines is not None:
        deadlines.forget((kind, namespace, name))
    key = f"{kind}/{namespace}/{name}"
    with _locks_guard:
        lock = _locks.get(key)
        if lock is not None and not lock.locked():
            del _locks[key]
    if kind == "DatabaseBackup":
        metrics.forget(namespace, name)


def observe_runs(jobs: list[Obj], pods: list[Obj]) -> list[ObservedRun]:
    """Each Job with its own Pods (matched by the label the Job controller puts on them)."""
    by_job: defaultdict[str, list[Obj]] = defaultdict(list)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        owner = next((labels[key] for key in JOB_NAME_LABELS if key in labels), None)
        if owner:
            by_job[owner].append(pod)
    return [observe(job, by_job[str(job["metadata"]["name"])]) for job in jobs]


def quiet(kind: str, status: Obj, generation: int, jobs: list[Obj], current_name: str) -> bool:
    """Whether the pods can tell nothing new: no Job runs and every finished one is already in status.

    Pods are not watched, so this spares the one LIST a reconcile would otherwise make."""
    runs = [observe(job, []) for job in jobs]
    if any(run.active for run in runs):
        return False
    if kind == "DatabaseBackup":
        recorded = backups.already_recorded(backups.newest_first(status.get("history") or []))
        return all(recorded({"job": run.job, "completedAt": stamp(run.completed_at)}) for run in runs)
    terminal = status.get("phase") in TERMINAL_PHASES and bool(status.get("job"))
    if kind == "DatabaseRestore":
        return terminal or not runs
    if current_name not in {run.job for run in runs}:
        return True
    return terminal and status.get("job") == current_name and status.get("observedGeneration") == generation


def jobs_of(ctx: Context, namespace: str, uid: str, named: str | None) -> list[Obj]:
    """The resource's Jobs from the watch (else a LIST); a Job its status names but the watch has not
    shown yet (just created) is read directly, so it is never taken for one deleted."""
    if ctx.cache is None:
        return ctx.kube.jobs_of(namespace, uid)
    jobs = ctx.cache.jobs_of(uid)
    if named and named not in {job["metadata"]["name"] for job in jobs}:
        found = ctx.kube.get_job(namespace, named)
        if (
            found is not None
            and (found.get("metadata") or {}).get("labels", {}).get(naming.LABEL_RESOURCE_UID) == uid
        ):
            jobs.append(found)
    return jobs


def decide(ctx: Context, body: Obj, now: datetime) -> Decision:
    kind = str(body["kind"])
    meta = body["metadata"]
    namespace, uid, generation = meta["namespace"], meta["uid"], int(meta.get("generation") or 1)
    status: Obj = dict(body.get("status") or {})
    current_name = naming.job_name(kind, meta["name"], uid, generation)
    jobs = jobs_of(ctx, namespace, uid, status.get("job"))
    settled = ctx.cache is not None and quiet(kind, status, generation, jobs, current_name)
    runs = observe_runs(jobs, [] if settled else ctx.kube.pods_of(namespace, uid))
    current = next((run for run in runs if run.job == current_name), None)
    if settled and kind != "DatabaseBackup":
        current = None  # its outcome is in status already; without its pod it would read as one lost
    if kind == "DatabaseMigration":
        others = [run.job for run in runs if run.active and run.job != current_name]
        return migrations.decide(body, current, others, ctx.settings, now)
    if kind == "DatabaseBackup":
        cronjobs = ctx.cache.cronjobs_of(uid) if ctx.cache else ctx.kube.cronjobs_of(namespace, uid)
        return backups.decide(body, runs, cronjobs[0] if cronjobs else None, ctx.settings, now)
    run = None if settled else restores.pick_run(status, runs)
    ref = ((body.get("spec") or {}).get("source") or {}).get("backupRef")
    referenced = ctx.kube.get_resource("DatabaseBackup", namespace, ref["name"]) if ref else None
    return restores.decide(body, run, referenced, ctx.settings, now)


def invalid_spec(body: Obj, error: ValidationError, now: datetime) -> Decision:
    """A spec the CRD let through but the models refuse: a condition, never a crash loop."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
    message = clip(f"the spec is invalid: {problems}")
    old = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    status = dict(old, phase="Failed", message=message, observedGeneration=generation)
    status["conditions"] = set_conditions(
        list(old.get("conditions") or []), [Want("Ready", False, "InvalidSpec", message)], generation, now
    )
    events = () if old.get("message") == message else (Event(WARNING, "InvalidSpec", message),)
    return Decision(status=status, events=events)


def _carry_out(ctx: Context, body: Obj, decision: Decision, now: datetime) -> Decision:
    meta = body["metadata"]
    kind, namespace, name = str(body["kind"]), str(meta["namespace"]), str(meta["name"])
    if decision.create is not None:
        try:
            if decision.create["kind"] == "CronJob":
                ctx.kube.apply_cronjob(decision.create)
            else:
                ctx.kube.create(decision.create)
        except KubeError as error:
            if error.status >= 500:
                raise
            message = clip(
                f"the operator could not create {decision.create['kind']} "
                f"{decision.create['metadata']['name']}: {error.message}"
            )
            # No "job": a Job never created must not later read as one deleted to cancel the run.
            status = {k: v for k, v in decision.status.items() if k != "job"}
            status.update(phase="Pending", message=message)
            status["conditions"] = set_conditions(
                list(decision.status.get("conditions") or []),
                [Want("Ready", False, "JobNotCreated", message)],
                meta.get("generation"),
                now,
            )
            decision = Decision(status=status, events=(Event(WARNING, "JobNotCreated", message),))
    if decision.delete_cronjob:
        ctx.kube.delete_cronjob(namespace, decision.delete_cronjob)
    old = dict(body.get("status") or {})
    patch = status_patch(old, decision.status)
    if patch:
        ctx.kube.patch_status(kind, namespace, name, patch)
    if old.get("phase") != decision.status.get("phase") or old.get("job") != decision.status.get("job"):
        log.info(
            "%s %s/%s: %s (job %s): %s",
            kind,
            namespace,
            name,
            decision.status.get("phase"),
            decision.status.get("job"),
            decision.status.get("message"),
        )
    for event in decision.events:
        ctx.post_event(body, event)
    for finished in decision.finished:
        metrics.record(namespace, name, finished)
    if kind == "DatabaseBackup":
        last = parse_time(decision.status.get("lastSuccessfulTime"))
        metrics.observe_last_backup(namespace, name, last.timestamp() if last else None)
    if ctx.deadlines is not None:
        ctx.deadlines.set(
            (kind, namespace, name), next_look(decision.status, decision.deadline, now, ctx.poll_seconds)
        )
    return decision


def sync(ctx: Context, kind: str, namespace: str, name: str) -> Decision | None:
    """Reconcile one resource now; None when it is gone or being deleted (its Jobs go with it)."""
    with _lock(kind, namespace, name):
        body = ctx.kube.get_resource(kind, namespace, name)
        gone = body is None or bool((body.get("metadata") or {}).get("deletionTimestamp"))
        if not gone:
            assert body is not None
            now = datetime.now(UTC)
            try:
                decision = decide(ctx, body, now)
            except ValidationError as error:
                decision = invalid_spec(body, error, now)
            return _carry_out(ctx, body, decision, now)
    forget(kind, namespace, name, ctx.deadlines)  # outside the lock, which it releases
    return None
