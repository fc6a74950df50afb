"""The kopf handlers: thin triggers that all end in `reconcile.sync` for the resource concerned.

No deletion handler: Jobs and CronJobs are owned by their resource and garbage-collected with it. The
timer makes kopf add its finalizer (to stop the timer cleanly), so a resource deleted while no operator
runs waits for one to start, or for the finalizer to be removed by hand.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from pgwarden.api.common import API_GROUP, API_VERSION
from pgwarden.api.crd import KINDS
from pgwarden.operator import naming
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.kube import Kube, load_configuration
from pgwarden.operator.reconcile import Context, forget, sync
from pgwarden.operator.status import TERMINAL_PHASES, Event

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PLURALS = {kind.plural: kind.kind for kind in KINDS}
TIMER_INTERVAL = float(os.environ.get("PGWARDEN_TIMER_INTERVAL", "15"))
ANNOTATION_PREFIX = f"operator.{API_GROUP}"


def post_event(body: Obj, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)  # type: ignore[arg-type]


def build_context(memo: kopf.Memo) -> Context:
    """The shared context, from what `pgwarden operator` put in the memo (or the environment)."""
    image = memo.get("image") or os.environ.get("PGWARDEN_JOB_IMAGE")
    settings = JobSettings(image=image) if image else JobSettings()
    kube = Kube(load_configuration(memo.get("kubeconfig") or None))
    return Context(kube=kube, settings=settings, post_event=post_event)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    workers = int(memo.get("workers") or 8)
    settings.batching.worker_limit = workers
    settings.execution.max_workers = workers
    settings.posting.level = logging.WARNING  # our Events say what happened; kopf's would repeat it
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    # Serve the namespaces given and the CRDs present at startup: no cluster-wide list/watch of
    # namespaces and CRDs, so the operator's Role stays namespaced.
    settings.scanning.disabled = True
    memo.context = build_context(memo)


@kopf.on.probe(id="api")
def api_reachable(memo: kopf.Memo, **_: Any) -> bool:
    """The liveness endpoint answers only while the API server does."""
    context: Context = memo.context
    context.kube.request("GET", "/version")
    return True


def _sync(memo: kopf.Memo, body: kopf.Body) -> None:
    context: Context = memo.context
    sync(context, str(body["kind"]), str(body.metadata.namespace), str(body.metadata.name))


def settled(body: kopf.Body) -> bool:
    """A one-time resource whose current generation has finished needs no periodic look."""
    status = body.get("status") or {}
    if body["kind"] == "DatabaseBackup" and (body.get("spec") or {}).get("schedule"):
        return False
    return bool(
        status.get("phase") in TERMINAL_PHASES
        and status.get("observedGeneration") == body.metadata.get("generation")
    )


for _plural in PLURALS:

    @kopf.on.resume(API_GROUP, API_VERSION, _plural)
    @kopf.on.create(API_GROUP, API_VERSION, _plural)
    @kopf.on.update(API_GROUP, API_VERSION, _plural)
    def on_change(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
        """A new resource, a new generation, an approval, or the operator starting: reconcile now."""
        _sync(memo, body)

    @kopf.timer(API_GROUP, API_VERSION, _plural, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL)
    def periodically(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
        """Catch what no watch event announces: a pod stuck on a missing Secret, a backup going stale."""
        if not settled(body):
            _sync(memo, body)

    @kopf.on.event(API_GROUP, API_VERSION, _plural)
    def on_deleted(body: kopf.Body, type: str | None, **_: Any) -> None:
        """A resource is gone: release its lock and metric series (its Jobs go with it)."""
        if type == "DELETED":
            forget(str(body["kind"]), str(body.metadata.namespace), str(body.metadata.name))


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY})
def on_job(memo: kopf.Memo, body: kopf.Body, type: str | None, **_: Any) -> None:
    """A Job of ours changed (started, finished, failed): reconcile the resource it runs for."""
    owner = naming.owner_of(dict(body))
    if owner is None or not hasattr(memo, "context"):
        return
    kind, namespace, name = owner
    context: Context = memo.context
    sync(context, kind, namespace, name)
