"""One reconciliation of one set: read it, its targets and its children, decide (pure), then carry it out.

Triggers: the set changing, one of its children changing (`handlers.on_set_child`, a little later so a burst
of child changes costs one look), a Secret of its namespace changing (`secret_watch`), a deadline.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from pgwarden.api.backup_set import DatabaseBackupSet, DatabaseBackupSetStatus
from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import Approval
from pgwarden.api.migration_set import DatabaseMigrationSet, DatabaseMigrationSetStatus
from pgwarden.api.sets import SET_LABEL, SetPhase, SetStatus
from pgwarden.operator import approval, backup_sets, metrics, migration_sets, set_drift
from pgwarden.operator.cache import Cache
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.deadlines import Deadlines, Key
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.objects import Obj
from pgwarden.operator.reconcile import observe_runs
from pgwarden.operator.resources import lenient
from pgwarden.operator.secret_watch import SecretWatch
from pgwarden.operator.set_children import (
    CHILD_KINDS,
    SPEC_HASH_ANNOTATION,
    ChildState,
    child_state,
    set_uid_of,
)
from pgwarden.operator.set_status import Release, Replacement, SetDecision
from pgwarden.operator.set_targets import listed, order_queries, ordered, selector_query
from pgwarden.operator.status import WARNING, Event, clip, second, status_patch

log = logging.getLogger(__name__)
SetResource = DatabaseMigrationSet | DatabaseBackupSet
MODELS: dict[str, type[SetResource]] = {
    "DatabaseMigrationSet": DatabaseMigrationSet,
    "DatabaseBackupSet": DatabaseBackupSet,
}
STATUS_MODELS: dict[str, type[SetStatus]] = {
    "DatabaseMigrationSet": DatabaseMigrationSetStatus,
    "DatabaseBackupSet": DatabaseBackupSetStatus,
}
# Writes to children at once (creating 300 children one after the other waits 300 times on the API server).
CHILD_WRITES = 8
SECRETS_FORBIDDEN = (
    "the operator may not list Secrets in {namespace}, whose names the selector chooses: install the chart "
    "with sets.selectSecrets=true (it grants list and watch on Secrets; the operator reads only their names), "
    "or name the Secrets in spec.targets.list"
)


@dataclass
class SetContext:
    """What set reconciliations share: the API, how Events are posted, the children the watches index by
    their set's uid (None: LIST instead), the Jobs and CronJobs of drift checks likewise (`cache`), the Job
    settings, the deadlines and the watch of Secret names."""

    kube: Kube
    post_event: Callable[[Obj, Event], None]
    children: Callable[[str], Iterable[ChildState]] | None = None
    cache: Cache | None = None
    settings: JobSettings = field(default_factory=JobSettings)
    deadlines: Deadlines | None = None
    secrets: SecretWatch | None = None
    _locks: defaultdict[Key, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks[key]

    def forget(self, key: Key) -> None:
        """A set is gone: its lock, deadline, watch entry and metric series."""
        with self._guard:
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
        if self.deadlines is not None:
            self.deadlines.forget(key)
        if self.secrets is not None:
            self.secrets.track(key, selects=False)
        metrics.forget_set(key[1], key[2], key[0])


def children_index(*indexes: Mapping[str, Iterable[ChildState]]) -> Callable[[str], list[ChildState]]:
    """The children of a set's uid, from the kopf indexes of DatabaseMigrations and DatabaseBackups."""
    return lambda uid: [child for index in indexes for child in index.get(uid, ())]


def read_set(body: Obj) -> SetResource:
    """A set as its model (the status leniently); ValidationError when the spec does not fit."""
    kind = str(body.get("kind"))
    resource = MODELS[kind].model_validate({key: value for key, value in body.items() if key != "status"})
    return resource.model_copy(update={"status": lenient(STATUS_MODELS[kind], body.get("status"))})


def targets_of(kube: Kube, resource: SetResource) -> tuple[list[str], str | None]:
    """The targets in rollout order, or why they could not be read."""
    namespace = resource.metadata.namespace or ""
    targets = resource.spec.targets
    order = resource.spec.rollout.order if isinstance(resource, DatabaseMigrationSet) else None
    names = listed(targets)
    query = selector_query(targets.selector) if targets.selector is not None else ""
    queries = order_queries(query, order) if order is not None else []
    try:
        if names is None:
            names = kube.secret_names(namespace, query)
        ranks = [kube.secret_names(namespace, each) for each in queries]
    except KubeError as error:
        if error.status == 403:
            return [], SECRETS_FORBIDDEN.format(namespace=namespace)
        if error.status == 400:
            return [], clip(f"spec.targets.selector or spec.rollout.order does not read: {error.message}")
        raise
    return ordered(names, ranks), None


def children_of(ctx: SetContext, resource: SetResource) -> list[ChildState]:
    meta = resource.metadata
    uid = meta.uid or ""
    if ctx.children is not None:
        return list(ctx.children(uid))
    kind = CHILD_KINDS[resource.kind]
    items = ctx.kube.list_resources(kind, meta.namespace or "", f"{SET_LABEL}={meta.name}")
    return [child_state(item) for item in items if set_uid_of(item) == uid]


def decide(ctx: SetContext, resource: SetResource, now: datetime) -> SetDecision[Any]:
    """Read the set's targets and children, and decide (pure)."""
    targets, problem = targets_of(ctx.kube, resource)
    children = children_of(ctx, resource)
    if isinstance(resource, DatabaseBackupSet):
        return backup_sets.decide(resource, targets, children, now, targets_problem=problem)
    refs = resource.spec.template.migrations.config_map_refs
    config_maps = None
    if refs and resource.spec.template.approval == Approval.MANUAL:
        namespace = resource.metadata.namespace or ""
        names = [ref.name for ref in refs]
        found = {name: ctx.kube.get_configmap(namespace, name) for name in names}
        config_maps = approval.read_config_maps(names, found)
    decision = migration_sets.decide(resource, targets, children, now, config_maps, targets_problem=problem)
    if problem is not None:  # the targets are unknown: the drift checks and what they found stay as they are
        last = resource.status.drift if resource.status else None
        return replace(decision, status=decision.status.model_copy(update={"drift": last}))
    inputs = drift_inputs(ctx, resource, targets)
    return set_drift.with_drift(decision, resource, targets, inputs, ctx.settings, now)


def drift_inputs(ctx: SetContext, mset: DatabaseMigrationSet, targets: list[str]) -> set_drift.DriftInputs:
    """The set's drift CronJobs and Jobs from the watches (else LISTs), and their pods only when a finished
    Job's report is not in status yet."""
    meta = mset.metadata
    namespace, uid = meta.namespace or "", meta.uid or ""
    if ctx.cache is not None:
        cronjobs, jobs = ctx.cache.cronjobs_of(uid), ctx.cache.jobs_of(uid)
    else:
        cronjobs, jobs = ctx.kube.cronjobs_of(namespace, uid), ctx.kube.jobs_of(namespace, uid)
    if mset.spec.drift is None and not cronjobs:
        return set_drift.DriftInputs()
    runs = None
    if set_drift.pods_needed(mset, targets, jobs):
        runs = observe_runs(jobs, ctx.kube.pods_of(namespace, uid))
    return set_drift.DriftInputs(cronjobs=cronjobs, jobs=jobs, runs=runs)


def invalid_spec(body: Obj, error: ValidationError, now: datetime) -> SetDecision[Any]:
    """A spec the CRD let through but the models refuse: Failed, a condition, never a crash loop."""
    kind = str(body.get("kind"))
    old = lenient(STATUS_MODELS[kind], body.get("status"))
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
    message = clip(f"the spec is invalid: {problems}")
    generation = (body.get("metadata") or {}).get("generation")
    status = old.model_copy(
        update={"phase": SetPhase.FAILED, "message": message, "observed_generation": generation}
    )
    status.conditions = set_conditions(
        old.conditions, [Want("Progressing", False, "InvalidSpec", message)], generation, second(now)
    )
    events = () if old.message == message else (Event(WARNING, "InvalidSpec", message),)
    return SetDecision(status=status, events=events)


def _children_changed(ctx: SetContext, body: Obj, decision: SetDecision[Any]) -> list[str]:
    """Create, replace, start and delete children; what the API refused (a quota, an admission policy),
    by child, to show in status (tried again at the next look)."""
    namespace = str(body["metadata"]["namespace"])
    kind = CHILD_KINDS[str(body["kind"])]
    kube = ctx.kube
    actions: list[tuple[str, Callable[[], object]]] = [
        (manifest["metadata"]["name"], partial(kube.create_resource, manifest))
        for manifest in decision.create
    ]

    def replacing(
        item: Replacement | Release, annotations: dict[str, str]
    ) -> tuple[str, Callable[[], object]]:
        return item.name, partial(kube.replace_spec, kind, namespace, item.name, item.spec, annotations)

    actions += [replacing(item, {SPEC_HASH_ANNOTATION: item.spec_hash}) for item in decision.replace]
    actions += [
        (name, partial(kube.annotate, kind, namespace, name, {APPROVED_ANNOTATION: value}))
        for name, value in decision.approve
    ]
    actions += [
        replacing(item, {SPEC_HASH_ANNOTATION: item.spec_hash, APPROVED_ANNOTATION: item.approved})
        for item in decision.release
    ]
    actions += [(name, partial(kube.delete_resource, kind, namespace, name)) for name in decision.delete]
    actions += [(m["metadata"]["name"], partial(kube.apply_cronjob, m)) for m in decision.apply_cronjobs]
    actions += [(name, partial(kube.delete_cronjob, namespace, name)) for name in decision.delete_cronjobs]
    return _carried_out(actions)


def _carried_out(actions: list[tuple[str, Callable[[], object]]]) -> list[str]:
    """Run the writes a few at a time (each waits on the API server, 300 in a row would take long); what the
    API refused, by child. An error of the API server itself (5xx) fails the reconcile, which is retried."""

    def attempt(name: str, action: Callable[[], object]) -> str | None:
        try:
            action()
        except KubeError as error:
            if error.status >= 500:
                raise
            return f"{name}: {error.message}"
        return None

    if len(actions) <= 1:
        outcomes = [attempt(name, action) for name, action in actions]
    else:
        with ThreadPoolExecutor(max_workers=CHILD_WRITES, thread_name_prefix="pgwarden-set") as pool:
            outcomes = list(pool.map(lambda item: attempt(*item), actions))
    return [outcome for outcome in outcomes if outcome is not None]


def carry_out(ctx: SetContext, body: Obj, decision: SetDecision[Any], now: datetime) -> SetDecision[Any]:
    meta = body["metadata"]
    kind, namespace, name = str(body["kind"]), str(meta["namespace"]), str(meta["name"])
    refused = _children_changed(ctx, body, decision)
    events = list(decision.events)
    status = decision.status
    if refused:
        detail = clip(
            f"the operator could not create or change {len(refused)} child(ren): {'; '.join(refused[:3])}"
        )
        status = status.model_copy(update={"message": clip(f"{status.message}; {detail}")})
        old_message = str((body.get("status") or {}).get("message") or "")
        if detail not in old_message:
            events.append(Event(WARNING, "ChildNotCreated", detail))
    old = dict(body.get("status") or {})
    new = status.to_status()
    patch = status_patch(old, new)
    if patch:
        ctx.kube.patch_status(kind, namespace, name, patch)
    if old.get("phase") != new.get("phase"):
        log.info("%s %s/%s: %s: %s", kind, namespace, name, new.get("phase"), new.get("message"))
    for event in events:
        ctx.post_event(body, event)
    counts = {key: value for key, value in (new.get("targets") or {}).items() if isinstance(value, int)}
    halted = status.phase == SetPhase.HALTED if kind == "DatabaseMigrationSet" else None
    metrics.observe_set(namespace, name, kind, counts, halted)
    if kind == "DatabaseMigrationSet":
        drift = new.get("drift") or {}
        metrics.observe_drift(namespace, name, drift.get("drifted") if drift.get("reports") else None)
    if ctx.deadlines is not None:
        ctx.deadlines.set((kind, namespace, name), decision.deadline)
    return decision


def sync(ctx: SetContext, kind: str, namespace: str, name: str) -> SetDecision[Any] | None:
    """Reconcile one set now; None when it is gone or being deleted (its children go with it)."""
    key = (kind, namespace, name)
    with ctx.lock(key):
        body = ctx.kube.get_resource(kind, namespace, name)
        if body is not None and not (body.get("metadata") or {}).get("deletionTimestamp"):
            now = datetime.now(UTC)
            try:
                resource = read_set(body)
            except ValidationError as error:
                return carry_out(ctx, body, invalid_spec(body, error, now), now)
            if ctx.secrets is not None:
                ctx.secrets.track(key, selects=resource.spec.targets.selector is not None)
            return carry_out(ctx, body, decide(ctx, resource, now), now)
    ctx.forget(key)
    return None
