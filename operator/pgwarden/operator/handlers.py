"""The kopf handlers: thin triggers that all end in `reconcile.sync` for the resource concerned.

What the operator knows of its Jobs and CronJobs comes from their watch streams (kopf indexes, `cache`),
not from LISTs per reconcile. Nothing runs on a fixed timer: a resource is looked at when it, one of its
Jobs or its CronJob changes, and at the deadlines its last reconcile computed (`deadlines`).

No finalizer: Jobs and CronJobs are owned by their resource and garbage-collected with it, so deleting a
resource never waits for the operator. Once it is gone, the operator deletes its CronJobs itself (`cleanup`):
sooner than the rate-limited garbage collector would.
"""

from __future__ import annotations

import contextvars
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from pgwarden.api.common import API_GROUP, API_VERSION
from pgwarden.api.crd import KINDS
from pgwarden.api.sets import SET_LABEL
from pgwarden.operator import cleanup, metrics, naming, progress, set_children, set_sync
from pgwarden.operator.cache import Cache, index_entry
from pgwarden.operator.deadlines import Deadlines, Key
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.kube import Kube, KubeError, load_configuration
from pgwarden.operator.objects import Obj
from pgwarden.operator.policy import Policy
from pgwarden.operator.reconcile import Context, forget, sync
from pgwarden.operator.secret_watch import SecretWatch
from pgwarden.operator.set_children import SET_KINDS
from pgwarden.operator.status import Decision, Event

log = logging.getLogger(__name__)
PLURALS = {kind.plural: kind.kind for kind in KINDS if kind.kind not in SET_KINDS}
SET_PLURALS = {kind.plural: kind.kind for kind in KINDS if kind.kind in SET_KINDS}
CHILD_PLURALS = ("databasemigrations", "databasebackups")
# How soon after a child's change its set is looked at: a burst of changes (a wave finishing) costs one look.
SET_LOOK_DELAY = timedelta(seconds=float(os.environ.get("PGWARDEN_SET_LOOK_DELAY", "1")))
# How soon a resource whose Job waits or runs is looked at again (its pod is not watched).
TIMER_INTERVAL = float(os.environ.get("PGWARDEN_TIMER_INTERVAL", "15"))
ANNOTATION_PREFIX = f"operator.{API_GROUP}"
MANAGED = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}


EVENT_MESSAGE_BYTES = (
    1024  # the API server's limit, counted in bytes (a clipped message ends in a 3-byte "…")
)


def post_event(body: Obj, event: Event) -> None:
    message = event.message.encode()[:EVENT_MESSAGE_BYTES].decode(errors="ignore")
    kopf.event(body, type=event.type, reason=event.reason, message=message)  # type: ignore[arg-type]


def reconcile(context: Context, key: Key) -> None:
    """`sync`, and when it fails (the API answered 5xx, a timeout) another try after the poll interval:
    event handlers are not retried by kopf, and no timer would come back to it."""
    try:
        decision = sync(context, *key)
    except Exception:
        if context.deadlines is not None:
            retry = datetime.now(UTC) + timedelta(seconds=context.poll_seconds)
            context.deadlines.set(key, retry)
        raise
    if context.deadlines is not None and key[0] == progress.KIND:
        _progress_looks(context.deadlines, key, decision)


def _progress_looks(deadlines: Deadlines, key: Key, decision: Decision[Any] | None) -> None:
    """A running (or rehearsing) migration's progress is looked at on a deadline of its own, every LOOK_EVERY
    at most."""
    looks = progress.progress_key(key[1], key[2])
    if decision is not None and decision.status.phase in progress.LOOKED_AT:
        deadlines.at_latest(looks, datetime.now(UTC) + progress.LOOK_EVERY)
    else:
        deadlines.forget(looks)


def look_at_progress(context: Context, key: Key) -> None:
    """One progress look, and the next while the migration runs."""
    if progress.look(context.kube, key[1], key[2], datetime.now(UTC)) and context.deadlines is not None:
        context.deadlines.set(key, datetime.now(UTC) + progress.LOOK_EVERY)


def build_context(memo: kopf.Memo) -> Context:
    """The shared context, from what `pgwarden operator` put in the memo (or the environment)."""
    image = memo.get("image") or os.environ.get("PGWARDEN_JOB_IMAGE")
    settings = JobSettings(image=image) if image else JobSettings()
    settings = replace(
        settings, service_account=memo.get("job_service_account"), policy=memo.get("policy") or Policy()
    )
    kube = Kube(load_configuration(memo.get("kubeconfig") or None))
    return Context(kube=kube, settings=settings, post_event=post_event, poll_seconds=TIMER_INTERVAL)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    workers = int(memo.get("workers") or 8)
    # Every object gets its own (cheap, asyncio) worker; only the threads that call the API are bounded.
    settings.batching.worker_limit = None
    settings.execution.max_workers = workers
    settings.posting.level = logging.WARNING  # our Events say what happened; kopf's would repeat it
    # kopf stores nothing on the resources (event handlers only); the prefix names what older versions left.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    # Serve the namespaces given and the CRDs present at startup: no cluster-wide list/watch of
    # namespaces and CRDs, so the operator's Role stays namespaced.
    settings.scanning.disabled = True
    context = build_context(memo)
    looks = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pgwarden-deadline")

    def look(key: Key) -> None:
        # In kopf's context (a handler's, kept by `_context`): kopf.event needs it to post Events.
        kopf_context = context.kopf_context or contextvars.copy_context()
        if key[0] in SET_KINDS:
            looks.submit(kopf_context.copy().run, _logged_set, memo.sets, key)
            return
        task = _logged_progress if progress.is_progress_key(key) else _logged
        looks.submit(kopf_context.copy().run, task, context, key)

    context.deadlines = Deadlines(look, clock=lambda: datetime.now(UTC))
    memo.context = context
    memo.sets = set_sync.SetContext(
        kube=context.kube, post_event=post_event, deadlines=context.deadlines, settings=context.settings
    )
    memo.sets.secrets = SecretWatch(context.kube, changed=lambda key: _look_soon(memo.sets, key))


def _logged(context: Context, key: Key) -> None:
    try:
        reconcile(context, key)
    except Exception:  # retried at its deadline; say why here, where no kopf handler does
        log.exception("reconcile of %s %s/%s failed; retrying in %gs", *key, context.poll_seconds)


def _logged_progress(context: Context, key: Key) -> None:
    """A progress look; one that fails shows older progress until the next, which a reconcile schedules."""
    try:
        look_at_progress(context, key)
    except KubeError as error:
        if error.status == 403:
            log.warning(
                "status.progress of %s/%s not shown: the operator may not read pod logs there; grant it get "
                "on pods/log in that namespace (the chart's Role does)",
                key[1],
                key[2],
            )
        else:
            log.exception("progress of %s/%s not read", key[1], key[2])
    except Exception:  # a progress look is best effort: it must not stop the next one; say why here
        log.exception("progress of %s/%s not read", key[1], key[2])


@kopf.on.probe(id="api")
def api_reachable(memo: kopf.Memo, **_: Any) -> bool:
    """The liveness endpoint answers only while the API server does."""
    context: Context = memo.context
    context.kube.request("GET", "/version")
    return True


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
def pgwarden_jobs(body: kopf.Body, **_: Any) -> dict[str, Obj] | None:
    """Our Jobs by the uid of the resource they run for."""
    return index_entry(body)


@kopf.index("batch", "v1", "cronjobs", labels=MANAGED)
def pgwarden_cronjobs(body: kopf.Body, **_: Any) -> dict[str, Obj] | None:
    """Our CronJobs by the uid of their DatabaseBackup."""
    return index_entry(body)


def _context(memo: kopf.Memo, indexes: dict[str, Any]) -> Context:
    """The context, reading from the watch-fed indexes once kopf has handed them over."""
    context: Context = memo.context
    if context.cache is None:
        context.cache = Cache(jobs=indexes["pgwarden_jobs"], cronjobs=indexes["pgwarden_cronjobs"])
        metrics.count_running_jobs(context.cache.jobs)
    if context.kopf_context is None:
        # For reconciles the deadlines start: kopf.event needs kopf's context. Kept on the shared Context,
        # not the memo: each resource's handlers get their own shallow copy of the memo.
        context.kopf_context = contextvars.copy_context()
    return context


for _plural in PLURALS:

    @kopf.on.event(API_GROUP, API_VERSION, _plural)
    def on_resource(memo: kopf.Memo, body: kopf.Body, type: str | None, **kwargs: Any) -> None:
        """Any change of a resource (new, a new generation, an approval, its status) or the operator starting
        (kopf lists them first): reconcile it; gone: release its lock, deadline and metric series.

        An event handler, not kopf's change handlers: those keep a diff base and progress in annotations,
        one more write per change, and reconcile needs no diff (it compares status with what it decides)."""
        key = (str(body["kind"]), str(body.metadata.namespace), str(body.metadata.name))
        if type == "DELETED":
            context: Context | None = getattr(memo, "context", None)
            forget(*key, context.deadlines if context else None)
            if context is not None and context.deadlines is not None:
                context.deadlines.forget(progress.progress_key(key[1], key[2]))
            if context is not None and context.cache is not None:
                uid = str(body.metadata.uid)
                cleanup.delete_owned_cronjobs(context.kube, key[1], uid, context.cache.cronjobs_of(uid))
        else:
            reconcile(_context(memo, kwargs), key)


def _owner_changed(memo: kopf.Memo, body: kopf.Body, kwargs: dict[str, Any]) -> None:
    owner = naming.owner_of(dict(body))
    if owner is None or not hasattr(memo, "context"):
        return
    if owner[0] in SET_KINDS:  # a set's drift check
        _look_soon(_set_context(memo, kwargs), owner)
        return
    reconcile(_context(memo, kwargs), owner)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def on_job(memo: kopf.Memo, body: kopf.Body, **kwargs: Any) -> None:
    """A Job of ours changed (started, finished, failed, deleted): reconcile the resource it runs for."""
    _owner_changed(memo, body, kwargs)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
def on_cronjob(memo: kopf.Memo, body: kopf.Body, type: str | None, **kwargs: Any) -> None:
    """A CronJob of ours was deleted or changed by someone else: bring it back to what the spec says."""
    if type in ("DELETED", "MODIFIED"):
        _owner_changed(memo, body, kwargs)


# -- DatabaseMigrationSet and DatabaseBackupSet --------------------------------------------------------


def _look_soon(sets: set_sync.SetContext, key: Key) -> None:
    """Look at a set shortly (or at once without deadlines): many triggers within the delay make one look."""
    if sets.deadlines is not None:
        sets.deadlines.at_latest(key, datetime.now(UTC) + SET_LOOK_DELAY)
    else:
        set_sync.sync(sets, *key)


def _logged_set(sets: set_sync.SetContext, key: Key) -> None:
    try:
        set_sync.sync(sets, *key)
    except Exception:  # retried at its deadline; say why here, where no kopf handler does
        log.exception("reconcile of %s %s/%s failed; retrying in %gs", *key, TIMER_INTERVAL)
        if sets.deadlines is not None:
            sets.deadlines.set(key, datetime.now(UTC) + timedelta(seconds=TIMER_INTERVAL))


def _set_context(memo: kopf.Memo, indexes: dict[str, Any]) -> set_sync.SetContext:
    """The sets' context, reading children from the watch-fed indexes once kopf has handed them over."""
    context = _context(memo, indexes)  # kopf's context, for the Events of looks the deadlines start
    sets: set_sync.SetContext = memo.sets
    sets.cache = context.cache  # the drift checks' Jobs and CronJobs
    if sets.children is None:
        sets.children = set_sync.children_index(
            indexes["pgwarden_set_migrations"], indexes["pgwarden_set_backups"]
        )
    return sets


@kopf.index(API_GROUP, API_VERSION, "databasemigrations", labels={SET_LABEL: kopf.PRESENT})
def pgwarden_set_migrations(body: kopf.Body, **_: Any) -> dict[str, Any] | None:
    """The DatabaseMigrations sets made, by their set's uid: a few fields each (`set_children.ChildState`)."""
    return set_children.index_entry(body)


@kopf.index(API_GROUP, API_VERSION, "databasebackups", labels={SET_LABEL: kopf.PRESENT})
def pgwarden_set_backups(body: kopf.Body, **_: Any) -> dict[str, Any] | None:
    """The DatabaseBackups sets made, by their set's uid."""
    return set_children.index_entry(body)


for _plural in SET_PLURALS:

    @kopf.on.event(API_GROUP, API_VERSION, _plural)
    def on_set(memo: kopf.Memo, body: kopf.Body, type: str | None, **kwargs: Any) -> None:
        """A set changed (new, a new generation, an approval, its status) or the operator started: reconcile
        it; gone: forget it (its children go with it, by their ownerReferences)."""
        key = (str(body["kind"]), str(body.metadata.namespace), str(body.metadata.name))
        if type == "DELETED":
            if hasattr(memo, "sets"):
                memo.sets.forget(key)
            return
        sets = _set_context(memo, kwargs)
        try:
            set_sync.sync(sets, *key)
        except Exception:
            if sets.deadlines is not None:
                sets.deadlines.set(key, datetime.now(UTC) + timedelta(seconds=TIMER_INTERVAL))
            raise


for _plural in CHILD_PLURALS:

    @kopf.on.event(API_GROUP, API_VERSION, _plural, labels={SET_LABEL: kopf.PRESENT})
    def on_set_child(memo: kopf.Memo, body: kopf.Body, **kwargs: Any) -> None:
        """A set's child changed (its phase, created, deleted): look at its set soon."""
        owner = next(
            (o for o in body.metadata.get("ownerReferences") or [] if o.get("kind") in SET_KINDS), None
        )
        if owner is None or not hasattr(memo, "sets"):
            return
        _look_soon(
            _set_context(memo, kwargs), (str(owner["kind"]), str(body.metadata.namespace), str(owner["name"]))
        )
