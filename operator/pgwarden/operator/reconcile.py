"""One reconciliation of one resource: read it and its Jobs, decide (pure), then carry the decision out.

Every trigger (create, update, resume, a Job's change, the periodic timer) ends here, so a restarted
operator, a missed watch event or two triggers at once all converge on the same state.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pgwarden.api.backup import BackupRun, DatabaseBackup
from pgwarden.api.migration import Approval, DatabaseMigration, DatabaseMigrationStatus
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus
from pgwarden.operator import (
    approval,
    backups,
    drills,
    metrics,
    migrations,
    naming,
    previews,
    rehearsals,
    restores,
)
from pgwarden.operator.cache import Cache
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.deadlines import Deadlines, next_look
from pgwarden.operator.jobs import JobSettings, is_drill
from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import ObservedRun, observe
from pgwarden.operator.policy import REASON as POLICY_DENIED
from pgwarden.operator.policy import PolicyDenied
from pgwarden.operator.resources import STATUS_MODELS, Resource, lenient, read, typed
from pgwarden.operator.status import (
    TERMINAL_PHASES,
    WARNING,
    Decision,
    Event,
    RunPhase,
    clip,
    second,
    status_patch,
)

log = logging.getLogger(__name__)


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
    # A handler's context, in which reconciles started by the deadlines run (kopf.event needs it).
    kopf_context: contextvars.Context | None = None


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
    metrics.forget(kind, namespace, name)


def observe_runs(jobs: list[Obj], pods: list[Obj]) -> list[ObservedRun]:
    """Each Job with its own Pods (matched by the label the Job controller puts on them)."""
    by_job: defaultdict[str, list[Obj]] = defaultdict(list)
    for pod in pods:
        owner = naming.job_of_pod(pod)
        if owner:
            by_job[owner].append(pod)
    runs = [observe(job, by_job[str(job["metadata"]["name"])]) for job in jobs]
    for run in runs:
        if run.report_notes is not None and (problems := run.report_notes.problems()):
            _say_once(run.job, "; ".join(problems))
    return runs


@functools.lru_cache(maxsize=1024)
def _say_once(job: str, problems: str) -> None:
    """A report read only in part is said once per Job (and what was left out), not at every reconcile."""
    log.warning("the report of Job %s was read in part: %s", job, problems)


def quiet(resource: Resource, jobs: list[Obj], current_name: str) -> bool:
    """Whether the pods can tell nothing new: no Job runs and every finished one is already in status.

    Pods are not watched, so this spares the one LIST a reconcile would otherwise make."""
    runs = [observe(job, []) for job in jobs]
    if any(run.active for run in runs):
        return False
    if isinstance(resource, DatabaseBackup):
        history = resource.status.history if resource.status else []
        recorded = backups.already_recorded(backups.newest_first(history))
        last_drill = resource.status.last_verified_backup if resource.status else None
        drill_jobs = {job["metadata"]["name"] for job in jobs if is_drill(job)}
        return all(
            drills.recorded(last_drill, run)
            if run.job in drill_jobs
            else recorded(BackupRun(job=run.job, completed_at=run.completed_at))
            for run in runs
        )
    status = resource.status
    if status is None:
        return not runs
    terminal = status.phase in TERMINAL_PHASES and bool(status.job)
    if isinstance(resource, DatabaseRestore):
        return terminal or not runs
    if isinstance(status, DatabaseMigrationStatus):
        for side in (status.rehearsal, status.preview):
            if side is not None and side.outcome is None and side.job in {run.job for run in runs}:
                return False  # a finished rehearsal or preview Job whose report is not in status yet
    if current_name not in {run.job for run in runs}:
        return True
    generation = resource.metadata.generation or 1
    return terminal and status.job == current_name and status.observed_generation == generation


def jobs_of(ctx: Context, namespace: str, uid: str, *named: str | None) -> list[Obj]:
    """The resource's Jobs from the watch (else a LIST); a Job its status names but the watch has not
    shown yet (just created) is read directly, so it is never taken for one deleted."""
    if ctx.cache is None:
        return ctx.kube.jobs_of(namespace, uid)
    jobs = ctx.cache.jobs_of(uid)
    for name in named:
        _read_missing(ctx, jobs, namespace, uid, name)
    return jobs


def _read_missing(ctx: Context, jobs: list[Obj], namespace: str, uid: str, named: str | None) -> None:
    """Add the Job `named` to `jobs` when the watch has not shown it yet."""
    if named and named not in {job["metadata"]["name"] for job in jobs}:
        found = ctx.kube.get_job(namespace, named)
        if (
            found is not None
            and (found.get("metadata") or {}).get("labels", {}).get(naming.LABEL_RESOURCE_UID) == uid
        ):
            jobs.append(found)


def decide(ctx: Context, body: Obj, now: datetime) -> Decision[Any]:
    """Read the resource and what it owns, and decide (pure); a spec the models refuse is InvalidSpec."""
    try:
        resource = read(body)
    except ValidationError as error:
        return invalid_spec(body, error, now)
    meta = resource.metadata
    namespace, uid, generation = meta.namespace or "", meta.uid or "", meta.generation or 1
    status = resource.status
    current_name = naming.job_name(resource.kind, meta.name or "", uid, generation)
    rehearsing = status.rehearsal if isinstance(status, DatabaseMigrationStatus) else None
    previewing = status.preview if isinstance(status, DatabaseMigrationStatus) else None
    jobs = jobs_of(
        ctx,
        namespace,
        uid,
        status.job if status else None,
        rehearsing.job if rehearsing else None,
        previewing.job if previewing else None,
    )
    settled = ctx.cache is not None and quiet(resource, jobs, current_name)
    runs = observe_runs(jobs, [] if settled else ctx.kube.pods_of(namespace, uid))
    current = next((run for run in runs if run.job == current_name), None)
    if isinstance(resource, DatabaseMigration):
        # No Job of this generation: it may be created now, from the files its ConfigMaps hold.
        files = _config_map_files(ctx, resource) if current is None else None
        digest = migrations.digest_of(files)
        rehearsal_name = rehearsals.job_name(resource, digest)
        rehearsal = next((run for run in runs if run.job == rehearsal_name), None)
        preview_name = previews.job_name(resource, digest)
        preview = next((run for run in runs if run.job == preview_name), None)
        recovering = naming.recovery_job_name(current_name)
        recovery = next((run for run in runs if run.job == recovering), None)
        if settled:  # their outcomes are in status already (read without their pods)
            current = rehearsal = preview = None
        sides = (current_name, rehearsal_name, preview_name, recovering)
        others = [run.job for run in runs if run.active and run.job not in sides]
        spec = resource.spec.rehearsal
        ref = spec.backup_ref if spec is not None else None
        # Only a rehearsal yet to be created reads its DatabaseBackup: not every reconcile of a migration
        # whose rehearsal runs or is recorded, or that has run.
        to_rehearse = (
            current is None
            and rehearsal is None
            and rehearsals.recorded(resource.status or DatabaseMigrationStatus(), generation, digest) is None
        )
        referenced = _referenced_backup(ctx, namespace, ref.name) if ref and to_rehearse else None
        return migrations.decide(
            resource,
            current,
            others,
            ctx.settings,
            now,
            files,
            rehearsal_run=rehearsal,
            referenced=referenced,
            preview_run=preview,
            recovery_run=recovery,
        )
    if isinstance(resource, DatabaseBackup):
        cronjobs = ctx.cache.cronjobs_of(uid) if ctx.cache else ctx.kube.cronjobs_of(namespace, uid)
        drill_jobs = {job["metadata"]["name"] for job in jobs if is_drill(job)}
        return backups.decide(
            resource,
            [run for run in runs if run.job not in drill_jobs],
            next((c for c in cronjobs if not is_drill(c)), None),
            ctx.settings,
            now,
            drill_runs=[run for run in runs if run.job in drill_jobs],
            drill_cronjob=next((c for c in cronjobs if is_drill(c)), None),
        )
    run = None if settled else restores.pick_run(resource.status or DatabaseRestoreStatus(), runs)
    recovery = next((r for r in runs if run is not None and r.job == naming.recovery_job_name(run.job)), None)
    ref = resource.spec.source.backup_ref
    referenced = _referenced_backup(ctx, namespace, ref.name) if ref else None
    return restores.decide(resource, run, referenced, ctx.settings, now, recovery)


def _config_map_files(ctx: Context, migration: DatabaseMigration) -> approval.ConfigMapFiles | None:
    """For a Manual migration whose files come from ConfigMaps, what they hold now (to show or approve)."""
    refs = migration.spec.migrations.config_map_refs
    if migration.spec.approval != Approval.MANUAL or not refs:
        return None
    namespace = migration.metadata.namespace or ""
    names = [ref.name for ref in refs]
    return approval.read_config_maps(names, {name: ctx.kube.get_configmap(namespace, name) for name in names})


def _referenced_backup(ctx: Context, namespace: str, name: str) -> DatabaseBackup | None:
    """The DatabaseBackup a restore's backupRef names; one whose spec does not read is as good as absent."""
    body = ctx.kube.get_resource("DatabaseBackup", namespace, name)
    if body is None:
        return None
    try:
        return typed(DatabaseBackup, body)
    except ValidationError:
        return None


def invalid_spec(body: Obj, error: ValidationError, now: datetime) -> Decision[Any]:
    """A spec the CRD let through but the models refuse: a condition, never a crash loop."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
    return refused(body, "InvalidSpec", clip(f"the spec is invalid: {problems}"), now)


def refused(body: Obj, reason: str, message: str, now: datetime) -> Decision[Any]:
    """A resource the operator will not run (InvalidSpec, PolicyDenied): Failed, a condition and an Event."""
    now = second(now)
    kind = str(body.get("kind"))
    model = STATUS_MODELS[kind]
    old = lenient(model, body.get("status"))
    generation = body["metadata"].get("generation")
    # Every kind has the phase Failed.
    update = {"message": message, "observed_generation": generation, "phase": RunPhase.FAILED.value}
    status = old.model_copy(update=update)
    status.conditions = set_conditions(
        old.conditions, [Want("Ready", False, reason, message)], generation, now
    )
    events = () if old.message == message else (Event(WARNING, reason, message),)
    return Decision(status=status, events=events)


def policy_denied(body: Obj, error: PolicyDenied, now: datetime) -> Decision[Any]:
    """Refused, and a scheduled backup's CronJobs (its drills' too) removed: a policy tightened since stops
    its runs too."""
    meta = body["metadata"]
    backup = body.get("kind") == "DatabaseBackup"
    cronjob = naming.cronjob_name(meta["name"], meta["uid"]) if backup else None
    drill = (naming.drill_cronjob_name(meta["name"], meta["uid"]),) if backup else ()
    decision = refused(body, POLICY_DENIED, clip(str(error)), now)
    return replace(decision, delete_cronjob=cronjob, delete_cronjobs=drill)


def _not_created(
    decision: Decision[Any], error: KubeError, generation: int | None, now: datetime
) -> Decision[Any]:
    """The decision once the Job or CronJob it wanted could not be created (a quota, an admission webhook)."""
    assert decision.create is not None
    message = clip(
        f"the operator could not create {decision.create['kind']} "
        f"{decision.create['metadata']['name']}: {error.message}"
    )
    # No "job": a Job never created must not later read as one deleted to cancel the run.
    status = decision.status.model_copy(
        update={"job": None, "phase": RunPhase.PENDING.value, "message": message}
    )
    status.conditions = set_conditions(
        decision.status.conditions, [Want("Ready", False, "JobNotCreated", message)], generation, second(now)
    )
    return Decision(status=status, events=(Event(WARNING, "JobNotCreated", message),))


def _further_cronjobs(ctx: Context, body: Obj, decision: Decision[Any]) -> None:
    """CronJobs besides the one `create` names (a DatabaseBackup's restore drills): created or replaced, or
    deleted. One the API refuses (a quota, an admission policy) is a Warning Event, tried again next time."""
    namespace = str(body["metadata"]["namespace"])
    for manifest in decision.apply_cronjobs:
        try:
            ctx.kube.apply_cronjob(manifest)
        except KubeError as error:
            if error.status >= 500:
                raise
            message = clip(
                f"the operator could not create CronJob {manifest['metadata']['name']}: {error.message}"
            )
            ctx.post_event(body, Event(WARNING, "JobNotCreated", message))
    for name in decision.delete_cronjobs:
        ctx.kube.delete_cronjob(namespace, name)


def _carry_out(ctx: Context, body: Obj, decision: Decision[Any], now: datetime) -> Decision[Any]:
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
            decision = _not_created(decision, error, meta.get("generation"), now)
    if decision.delete_cronjob:
        ctx.kube.delete_cronjob(namespace, decision.delete_cronjob)
    _further_cronjobs(ctx, body, decision)
    old = dict(body.get("status") or {})
    new = decision.status.to_status()  # the one place status becomes JSON
    patch = status_patch(old, new)
    if patch:
        ctx.kube.patch_status(kind, namespace, name, patch)
    if old.get("phase") != new.get("phase") or old.get("job") != new.get("job"):
        log.info(
            "%s %s/%s: %s (job %s): %s",
            kind,
            namespace,
            name,
            new.get("phase"),
            new.get("job"),
            new.get("message"),
        )
    for event in decision.events:
        ctx.post_event(body, event)
    for finished in decision.finished:
        metrics.record(namespace, name, finished)
    metrics.observe(body, decision.status, now)
    if ctx.deadlines is not None:
        ctx.deadlines.set(
            (kind, namespace, name), next_look(new.get("phase"), decision.deadline, now, ctx.poll_seconds)
        )
    return decision


def sync(ctx: Context, kind: str, namespace: str, name: str) -> Decision[Any] | None:
    """Reconcile one resource now; None when it is gone or being deleted (its Jobs go with it)."""
    with _lock(kind, namespace, name):
        body = ctx.kube.get_resource(kind, namespace, name)
        gone = body is None or bool((body.get("metadata") or {}).get("deletionTimestamp"))
        if not gone:
            assert body is not None
            now = datetime.now(UTC)
            try:
                decision = decide(ctx, body, now)
            except PolicyDenied as error:
                decision = policy_denied(body, error, now)
            return _carry_out(ctx, body, decision, now)
    forget(kind, namespace, name, ctx.deadlines)  # outside the lock, which it releases
    return None
