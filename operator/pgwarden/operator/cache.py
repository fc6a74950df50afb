"""What the operator knows of its Jobs and CronJobs, from their watch streams: kopf indexes keyed by the uid
of the resource they were made for, so a reconcile reads memory instead of LISTing its namespace.

kopf fills every index before the first regular handler runs, so at start-up the cache is complete.
Only what the pure modules read is kept (metadata and status, not the pod template with its task).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgwarden.operator import naming
from pgwarden.operator.objects import Obj

_METADATA = ("name", "namespace", "uid", "labels", "annotations", "creationTimestamp", "deletionTimestamp")


def slim(body: Mapping[str, Any]) -> Obj:
    """A Job or CronJob as the operator reads it: its metadata and status."""
    meta = body.get("metadata") or {}
    return {
        "kind": body.get("kind"),
        "metadata": {key: meta[key] for key in _METADATA if key in meta},
        "status": dict(body.get("status") or {}),
    }


def index_entry(body: Mapping[str, Any]) -> dict[str, Obj] | None:
    """`{resource uid: slim object}` for a Job or CronJob made for a pgwarden resource, else None."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    uid = labels.get(naming.LABEL_RESOURCE_UID)
    return {str(uid): slim(body)} if uid else None


@dataclass(frozen=True)
class Cache:
    """The indexes, read by owner uid; `Mapping[uid, objects]` is the shape of a kopf index."""

    jobs: Mapping[str, Iterable[Obj]]
    cronjobs: Mapping[str, Iterable[Obj]]

    def jobs_of(self, uid: str) -> list[Obj]:
        return list(self.jobs.get(uid, ()))

    def cronjobs_of(self, uid: str) -> list[Obj]:
        return list(self.cronjobs.get(uid, ()))
