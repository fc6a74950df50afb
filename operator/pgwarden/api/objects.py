"""Kubernetes objects as the API server sends and takes them: JSON mappings, named once for the operator and
kubectl pgwarden alike (the typed resources are the models beside this module)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# An object the API server sent: a Job, a Pod, a CronJob, a resource's body, a Lease.
Obj = dict[str, Any]
# An object the operator builds, to create, replace or patch it.
Manifest = dict[str, Any]


def parse_time(value: object) -> datetime | None:
    """A Kubernetes timestamp (`2025-03-01T11:59:00Z`) as an aware datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
