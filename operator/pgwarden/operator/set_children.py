"""A set's children as the set sees them, and the manifests it makes them from. Pure.

A child is a DatabaseMigration or DatabaseBackup owned by its set (ownerReferences: deleted with it),
labelled `pgwarden.io/set=<set>` and annotated with the hash of the spec the set gave it, so a set
compares hashes, not specs, and keeps only a few fields of each child in memory (`ChildState`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgwarden.api.common import API_GROUP, APPROVED_ANNOTATION, owner_reference
from pgwarden.api.sets import SET_LABEL
from pgwarden.operator import naming

Obj = dict[str, Any]
SPEC_HASH_ANNOTATION = f"{API_GROUP}/set-spec-hash"
CHILD_KINDS = {"DatabaseMigrationSet": "DatabaseMigration", "DatabaseBackupSet": "DatabaseBackup"}
SET_KINDS = frozenset(CHILD_KINDS)
FAILED_PHASES = frozenset({"Failed", "RolledBack", "Cancelled"})


@dataclass(frozen=True)
class ChildState:
    """What a set reads of one child: who it is, what it was given, and where it stands."""

    name: str
    target: str  # the Secret: spec.database.secretRef.name
    generation: int = 1
    spec_hash: str | None = None
    approved: str | None = None  # the pgwarden.io/approved annotation
    phase: str | None = None
    observed_generation: int | None = None
    message: str | None = None
    current_version: str | None = None
    approval_digest: str | None = None  # status.approval.digest (files from ConfigMaps)
    deleting: bool = False
    conditions: Mapping[str, str] = field(default_factory=dict)  # type -> True/False/Unknown
    last_backup: str | None = None  # status.lastSuccessfulTime
    verified: bool = False  # a verified restore: a drill succeeded, or the last backup was restored
    last_run_failed: bool = False

    @property
    def settled(self) -> bool:
        """Whether its status describes its current spec (the operator has looked at this generation)."""
        return self.observed_generation == self.generation

    @property
    def succeeded(self) -> bool:
        return self.settled and self.phase == "Succeeded"

    @property
    def failed(self) -> bool:
        return self.settled and self.phase in FAILED_PHASES

    @property
    def released(self) -> bool:
        """Whether the set approved its current generation (the annotation may carry a files digest)."""
        return (self.approved or "").partition("-")[0] == str(self.generation)


def child_state(body: Mapping[str, Any]) -> ChildState:
    """The `ChildState` of a child as the API (or a watch) sends it."""
    meta = body.get("metadata") or {}
    notes = meta.get("annotations") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or []}
    last = status.get("lastBackup") or {}
    history = status.get("history") or []
    return ChildState(
        name=str(meta.get("name")),
        target=str(((spec.get("database") or {}).get("secretRef") or {}).get("name") or ""),
        generation=int(meta.get("generation") or 1),
        spec_hash=notes.get(SPEC_HASH_ANNOTATION),
        approved=notes.get(APPROVED_ANNOTATION),
        phase=status.get("phase"),
        observed_generation=status.get("observedGeneration"),
        message=status.get("message"),
        current_version=status.get("currentVersion"),
        approval_digest=(status.get("approval") or {}).get("digest"),
        deleting=bool(meta.get("deletionTimestamp")),
        conditions=conditions,
        last_backup=status.get("lastSuccessfulTime"),
        verified=bool(status.get("lastVerifiedTime") or last.get("verified")),
        last_run_failed=bool(history) and (history[0] or {}).get("outcome") == "Failed",
    )


def set_uid_of(body: Mapping[str, Any]) -> str | None:
    """The uid of the set that controls a child (its controller ownerReference), if a set does."""
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") in SET_KINDS and owner.get("controller"):
            return str(owner.get("uid"))
    return None


def index_entry(body: Mapping[str, Any]) -> dict[str, ChildState] | None:
    """`{set uid: child state}` for a child of a set, else None (for a kopf index)."""
    uid = set_uid_of(body)
    return {uid: child_state(body)} if uid else None


class ChildSpecs:
    """The children's specs of one set: the part every child shares (the template) serialised once, the part
    of each target (its database, a staggered schedule) added per target; a spec's hash covers both."""

    def __init__(self, shared: Obj) -> None:
        self.shared = shared
        self._digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()

    def spec(self, own: Obj) -> Obj:
        return {**self.shared, **own}

    def hash(self, own: Obj) -> str:
        text = f"{self._digest}/{json.dumps(own, sort_keys=True)}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def child_manifest(set_kind: str, set_meta: Obj, name: str, spec: Obj, spec_hash: str) -> Obj:
    """A child resource: owned by the set, labelled with its name, annotated with its spec's hash."""
    set_name, namespace, uid = set_meta["name"], set_meta["namespace"], set_meta["uid"]
    return {
        "apiVersion": f"{API_GROUP}/v1alpha1",
        "kind": CHILD_KINDS[set_kind],
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SET_LABEL: set_name, naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash},
            "ownerReferences": [owner_reference(set_kind, set_name, uid)],
        },
        "spec": spec,
    }
