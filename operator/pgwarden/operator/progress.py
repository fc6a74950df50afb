"""status.progress of a running (or rehearsing) migration: the last progress line of its Job's log (the run's,
or the rehearsal's), looked at every so often.

A Job Pod cannot write status (it has no ServiceAccount token), so its runner prints `pgwarden-progress {json}`
lines and the operator reads the tail of the Pod's log. Only running and rehearsing migrations get looks, on a
deadline of their own (`progress_key`), never more often than every LOOK_EVERY; what to patch is decided
here without I/O (`progress_patch`), the reads and the patch are `look`'s.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pgwarden.api.migration import DatabaseMigrationStatus, MigrationPhase
from pgwarden.api.progress import last_progress
from pgwarden.operator import naming
from pgwarden.operator.deadlines import Key
from pgwarden.operator.jobs import CONTAINER
from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.resources import lenient

log = logging.getLogger(__name__)
Obj = dict[str, Any]
KIND = "DatabaseMigration"
KEY_KIND = "DatabaseMigration/progress"  # a deadline apart from the resource's own reconciles
LOOK_EVERY = timedelta(seconds=15)
# The runner reports a long statement every 5 s: a line older than this belongs to a statement that ended.
STALE_AFTER = timedelta(seconds=30)
TAIL_LINES = 40
LIMIT_BYTES = 32 * 1024


def progress_key(namespace: str, name: str) -> Key:
    return (KEY_KIND, namespace, name)


def is_progress_key(key: Key) -> bool:
    return key[0] == KEY_KIND


LOOKED_AT = (MigrationPhase.RUNNING, MigrationPhase.REHEARSING)


def watched_job(status: DatabaseMigrationStatus) -> str | None:
    """The Job whose log carries status.progress: the run's while Running, the rehearsal's while Rehearsing."""
    if status.phase == MigrationPhase.RUNNING:
        return status.job or None
    rehearsal = status.rehearsal
    if status.phase == MigrationPhase.REHEARSING and rehearsal is not None and rehearsal.outcome is None:
        return rehearsal.job
    return None


def running_pod(pods: list[Obj], job: str) -> str | None:
    """The name of the Job's Pod that is running now, if any."""
    for pod in pods:
        running = (pod.get("status") or {}).get("phase") == "Running"
        if running and naming.job_of_pod(pod) == job:
            return str((pod.get("metadata") or {}).get("name"))
    return None


def progress_patch(status: DatabaseMigrationStatus, log_tail: str | None, now: datetime) -> Obj | None:
    """The status patch a log tail calls for (pure): its last progress line while fresh, else none at all;
    None when status already says so (a line seen twice patches once)."""
    found = last_progress(log_tail or "")
    if found is not None and now - found.observed_at > STALE_AFTER:
        found = None
    if found == status.progress:
        return None
    return {"progress": found.to_json_dict() if found is not None else None}


def look(kube: Kube, namespace: str, name: str, now: datetime) -> bool:
    """Show the running Job's progress in status; False once the migration no longer runs or rehearses (no
    more looks)."""
    body = kube.get_resource(KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = lenient(DatabaseMigrationStatus, body.get("status"))
    job = watched_job(status)
    if job is None:
        return False
    meta = body["metadata"]
    pod = running_pod(kube.pods_of(namespace, str(meta.get("uid"))), job)
    log_tail = None
    if pod is not None:
        log_tail = kube.pod_log(namespace, pod, CONTAINER, tail_lines=TAIL_LINES, limit_bytes=LIMIT_BYTES)
    patch = progress_patch(status, log_tail, now)
    if patch is not None:
        try:
            # Only onto the status just read: a reconcile that ended the run in between wins.
            kube.patch_status(KIND, namespace, name, patch, resource_version=meta.get("resourceVersion"))
        except KubeError as error:
            if error.status != 409:
                raise
            log.debug("progress of %s/%s not written: the migration changed meanwhile", namespace, name)
    return True
