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
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.observe import ObservedRun, observe, parse_time
from pgwarden.operator.status import WARNING, Decision, Event, clip, status_patch

log = logging.getLogger(__name__)
Obj = dict[str, Any]
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


@dataclass
class Context:
    """What reconciliations share: the API, the Job settings, and how Events are posted."""

    kube: Kube
    settings: JobSettings
    post_event: Callable[[Obj, Event], None]


_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _lock(kind: str, namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks[f"{kind}/{namespace}/{name}"]


def forget(kind: str, namespace: str, name: str) -> None:
    """Release what the operator keeps for a resource once it is gone: its lock and its metric series."""
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


def decide(ctx: Context, body: Obj, now: datetime) -> Decision:
    kind = str(body["kind"])
    meta = body["metadata"]
    namespace, uid, generation = meta["namespace"], meta["uid"], int(meta.get("generation") or 1)
    runs = observe_runs(ctx.kube.jobs_of(namespace, uid), ctx.kube.pods_of(namespace, uid))
    current_name = naming.job_name(kind, meta["name"], uid, generation)
    current = next((run for run in runs if run.job == current_name), None)
    if kind == "DatabaseMigration":
        others = [run.job for run in runs if run.active and run.job != current_name]
        return migrations.decide(body, current, others, ctx.settings, now)
    if kind == "DatabaseBackup":
        cronjobs = ctx.kube.cronjobs_of(namespace, uid)
        return backups.decide(body, runs, cronjobs[0] if cronjobs else None, ctx.settings, now)
    run = restores.pick_run(dict(body.get("status") or {}), runs)
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
    forget(kind, namespace, name)  # outside the lock, which it releases
    return None
