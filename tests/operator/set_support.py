"""Sets as the operator receives them, and their children as the apiserver would hold them after the set's
decisions: `Fleet` applies a decision's creates, replacements, approvals and deletions to ChildStates the way
the API would (a new spec is a new generation), and lets a test move a child to a phase as its own
reconcile would. Pure data: the operators' pure decide functions are what is under test."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pgwarden.api.backup_set import DatabaseBackupSet
from pgwarden.api.migration_set import DatabaseMigrationSet
from pgwarden.operator.set_children import ChildState
from pgwarden.operator.set_status import SetDecision
from pgwarden.operator.set_sync import read_set

Obj = dict[str, Any]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SET_UID = "5e75e75e-1111-2222-3333-444455556666"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sets"
SQL = [{"name": "0001_invoices.sql", "sql": "CREATE TABLE invoices (id int);"}]


def migration_set(
    *,
    rollout: Obj | None = None,
    approval: str = "Automatic",
    inline: list[Obj] | None = None,
    targets: Obj | None = None,
    rehearsal: Obj | None = None,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    status: Obj | None = None,
    name: str = "tenants",
) -> Obj:
    template: Obj = {"approval": approval, "migrations": {"inline": inline or SQL}}
    if rehearsal is not None:
        template["rehearsal"] = rehearsal
    spec: Obj = {
        "targets": targets or {"selector": {"matchLabels": {"pgwarden.io/tenant-db": "true"}}},
        "template": template,
    }
    if rollout is not None:
        spec["rollout"] = rollout
    body: Obj = {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseMigrationSet",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": SET_UID,
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def backup_set(
    *, stagger: str | None = None, status: Obj | None = None, name: str = "tenants-nightly"
) -> Obj:
    for document in yaml.safe_load_all((EXAMPLES / "backup-tenants.yaml").read_text()):
        if document and document["kind"] == "DatabaseBackupSet":
            body = copy.deepcopy(document)
    body["metadata"].update(name=name, namespace="shop", uid=SET_UID, generation=1)
    if stagger is None:
        body["spec"].pop("stagger", None)
    else:
        body["spec"]["stagger"] = {"window": stagger}
    if status is not None:
        body["status"] = status
    return body


def typed_migration_set(body: Obj) -> DatabaseMigrationSet:
    resource = read_set(body)
    assert isinstance(resource, DatabaseMigrationSet)
    return resource


def typed_backup_set(body: Obj) -> DatabaseBackupSet:
    resource = read_set(body)
    assert isinstance(resource, DatabaseBackupSet)
    return resource


@dataclass
class Fleet:
    """A set's children as the apiserver holds them, by target."""

    children: dict[str, ChildState] = field(default_factory=dict)
    specs: dict[str, Obj] = field(default_factory=dict)

    def states(self) -> list[ChildState]:
        return list(self.children.values())

    def apply(self, decision: SetDecision[Any]) -> None:
        """Carry a decision out as the API would."""
        for manifest in decision.create:
            target = manifest["spec"]["database"]["secretRef"]["name"]
            name = manifest["metadata"]["name"]
            if target in self.children:
                continue
            notes = manifest["metadata"]["annotations"]
            self.children[target] = ChildState(
                name=name, target=target, spec_hash=notes["pgwarden.io/set-spec-hash"]
            )
            self.specs[target] = manifest["spec"]
        by_name = {child.name: target for target, child in self.children.items()}
        for item in decision.replace:
            target = by_name[item.name]
            child = self.children[target]
            self.children[target] = dataclasses.replace(
                child, generation=child.generation + 1, spec_hash=item.spec_hash
            )
            self.specs[target] = item.spec
        for name, value in decision.approve:
            target = by_name[name]
            self.children[target] = dataclasses.replace(self.children[target], approved=value)
        for release in decision.release:  # a new spec (a new generation) and its approval in one write
            target = by_name[release.name]
            child = self.children[target]
            self.children[target] = dataclasses.replace(
                child, generation=child.generation + 1, spec_hash=release.spec_hash, approved=release.approved
            )
            self.specs[target] = release.spec
        for name in decision.delete:
            self.children.pop(by_name[name], None)

    def reconciled(self, target: str, phase: str, **changes: Any) -> None:
        """The child's own reconcile wrote `phase` (and `changes`) for its current generation."""
        child = self.children[target]
        self.children[target] = dataclasses.replace(
            child, phase=phase, observed_generation=child.generation, **changes
        )

    def waiting(self) -> None:
        """Every child's own reconcile ran: those not started show AwaitingApproval for their generation."""
        for target, child in self.children.items():
            if not child.released and not child.settled:
                self.reconciled(target, "AwaitingApproval")

    def started(self) -> list[str]:
        """Children approved for their current generation and not finished: the ones running."""
        return sorted(
            target
            for target, child in self.children.items()
            if child.released and not (child.settled and child.phase in ("Succeeded", "Failed", "RolledBack"))
        )


def with_status(body: Obj, decision: SetDecision[Any]) -> Obj:
    """The set as it reads after the decision's status was written."""
    return dict(body, status=decision.status.to_status())
