"""Names, labels and annotations of what the operator creates: deterministic, so a restarted operator adopts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pgwarden.api.common import API_GROUP

MANAGED_BY = "pgwarden-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_RESOURCE_UID = f"{API_GROUP}/resource-uid"
LABEL_GENERATION = f"{API_GROUP}/generation"
ANNOTATION_KIND = f"{API_GROUP}/resource-kind"
ANNOTATION_NAME = f"{API_GROUP}/resource-name"
ANNOTATION_SPEC_HASH = f"{API_GROUP}/spec-hash"

# What the Job controller labels its Pods with: the Job's name (the older label on older clusters).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

JOB_NAME_LIMIT = 63  # the Job controller copies the name into a label value
CRONJOB_NAME_LIMIT = 52  # the CronJob controller appends an 11-character suffix to its Jobs' names

COMPONENTS = {
    "DatabaseMigration": "migrate",
    "DatabaseBackup": "backup",
    "DatabaseRestore": "restore",
    "DatabaseMigrationSet": "drift",  # a set's only Jobs are its drift checks; its children run the rest
}


def _digest(*parts: object, length: int = 6) -> str:
    text = "/".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _fit(base: str, suffix: str, limit: int) -> str:
    return base[: limit - len(suffix)].rstrip("-.") + suffix


def job_name(kind: str, name: str, uid: str, generation: int) -> str:
    """`<name>-<component>-<generation>-<hash>`, at most 63 characters; the same for the same generation."""
    suffix = f"-{COMPONENTS[kind]}-{generation}-{_digest(uid, generation)}"
    return _fit(name, suffix, JOB_NAME_LIMIT)


def rehearsal_job_name(name: str, uid: str, generation: int, digest: str | None = None) -> str:
    """`<name>-rehearse-<generation>-<hash>`: one rehearsal per generation (and, for ConfigMaps, per files)."""
    suffix = f"-rehearse-{generation}-{_digest(uid, generation, digest or '', 'rehearse')}"
    return _fit(name, suffix, JOB_NAME_LIMIT)


def recovery_job_name(job: str) -> str:
    """`<job>-recover-<hash>`, at most 63 characters: the one recovery Job of a Job that died without a report."""
    return _fit(job, f"-recover-{_digest(job, 'recover')}", JOB_NAME_LIMIT)


def preview_job_name(name: str, uid: str, generation: int, digest: str | None = None) -> str:
    """`<name>-preview-<generation>-<hash>`: one read-only plan and lint per generation (and files)."""
    suffix = f"-preview-{generation}-{_digest(uid, generation, digest or '', 'preview')}"
    return _fit(name, suffix, JOB_NAME_LIMIT)


def cronjob_name(name: str, uid: str) -> str:
    """`<name>-backup-<hash>`, at most 52 characters; one CronJob per DatabaseBackup."""
    return _fit(name, f"-backup-{_digest(uid)}", CRONJOB_NAME_LIMIT)


def drill_cronjob_name(name: str, uid: str) -> str:
    """`<name>-drill-<hash>`, at most 52 characters; the CronJob of a DatabaseBackup's restore drills."""
    return _fit(name, f"-drill-{_digest(uid, 'drill')}", CRONJOB_NAME_LIMIT)


def drift_cronjob_name(name: str, uid: str, index: int) -> str:
    """`<name>-drift-<index>-<hash>`, at most 52 characters: the CronJob of a set's drift checks of one group
    of its targets."""
    return _fit(name, f"-drift-{index}-{_digest(uid, 'drift', index)}", CRONJOB_NAME_LIMIT)


def labels(kind: str, uid: str, generation: int | None = None) -> dict[str, str]:
    """Labels of Jobs, CronJobs and Pods made for a resource; `resource-uid` is what the operator selects on."""
    result = {
        LABEL_NAME: "pgwarden",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENTS[kind],
        LABEL_RESOURCE_UID: uid,
    }
    if generation is not None:
        result[LABEL_GENERATION] = str(generation)
    return result


def owner_annotations(kind: str, name: str) -> dict[str, str]:
    """The owning resource's kind and name (names may be longer than a label value allows)."""
    return {ANNOTATION_KIND: kind, ANNOTATION_NAME: name}


def owner_of(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the pgwarden resource a Job or Pod was made for, from its annotations."""
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    kind, name = notes.get(ANNOTATION_KIND), notes.get(ANNOTATION_NAME)
    if kind not in COMPONENTS or not name or not meta.get("namespace"):
        return None
    return str(kind), str(meta["namespace"]), str(name)


def spec_hash(manifest: dict[str, Any]) -> str:
    """A short hash of a manifest's spec, so an unchanged CronJob is not rewritten."""
    return _digest(json.dumps(manifest.get("spec"), sort_keys=True), length=16)


def job_of_pod(pod: dict[str, Any]) -> str | None:
    """The name of the Job a Pod runs for, from the labels the Job controller puts on it."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return next((str(labels[key]) for key in JOB_NAME_LABELS if key in labels), None)
