"""Kubernetes objects as the API server sends and takes them: JSON mappings, named once for every module."""

from __future__ import annotations

from typing import Any

# An object the API server sent: a Job, a Pod, a CronJob, a resource's body, a Lease.
Obj = dict[str, Any]
# An object the operator builds, to create, replace or patch it.
Manifest = dict[str, Any]
