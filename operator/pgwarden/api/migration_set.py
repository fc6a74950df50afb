"""DatabaseMigrationSet: one migration over many tenant databases, rolled out in waves and approved once."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from pgwarden.api.base import ApiModel
from pgwarden.api.common import CONDITIONS_SCHEMA_EXTRA, Condition, DatabaseRef, ObjectMeta, cel, validations
from pgwarden.api.migration import ApprovalStatus, DatabaseMigrationSpec
from pgwarden.api.sets import Rollout, SetStatus, SetTargets, TargetCounts, VersionCount

NO_DATABASE = (
    "a set's template names no database: each target's Secret is its database (spec.targets), and "
    "spec.targets.sslMode and caSecretRef apply to all of them"
)


def rules_of(model: type[ApiModel]) -> list[Any]:
    """The CEL rules a model's config carries, for a subclass that adds its own."""
    extra = model.model_config.get("json_schema_extra")
    rules = extra.get("x-kubernetes-validations") if isinstance(extra, dict) else None
    return list(rules) if isinstance(rules, list) else []


class MigrationTemplate(DatabaseMigrationSpec):
    """The spec of every child DatabaseMigration, without `database` (each target's Secret is its database).

    `approval` is the set's: Manual waits for one approval of the set; its children are approved by the set
    as the rollout reaches them, never one by one."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *rules_of(DatabaseMigrationSpec), cel("!has(self.database)", NO_DATABASE)
        )
    )

    database: DatabaseRef | None = Field(  # type: ignore[assignment]
        default=None, description="Never set in a template: each target's Secret is its database."
    )

    @model_validator(mode="after")
    def _no_database(self) -> MigrationTemplate:
        if self.database is not None:
            raise ValueError(NO_DATABASE)
        return self


class DatabaseMigrationSetSpec(ApiModel):
    """Migrate every target database with one spec: canaries first, then in waves, halting on failures."""

    template: MigrationTemplate = Field(
        description=(
            "The spec of every child DatabaseMigration (verification, rollback, backups, lint, approval), "
            "without database."
        )
    )
    targets: SetTargets = Field(description="The databases: Secrets chosen by a label selector, or listed.")
    rollout: Rollout = Field(
        default_factory=Rollout, description="Canaries, how many at once, and when to halt."
    )


class DatabaseMigrationSetStatus(SetStatus):
    """Counts and names, never per-target details: those are in the children (`kubectl get dbmig -l
    pgwarden.io/set=<name>`)."""

    targets: TargetCounts | None = Field(default=None, description="How many targets stand where.")
    versions: list[VersionCount] = Field(
        default_factory=list, description="The schema versions the targets have reached (most common first)."
    )
    approval: ApprovalStatus | None = Field(
        default=None,
        description=(
            "For approval: Manual, what one approval of the set approves: its generation and the digest of its "
            "SQL: pgwarden.io/approved=<generation>-<digest>."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Progressing, Halted and Complete.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )


class DatabaseMigrationSet(ApiModel):
    """A DatabaseMigrationSet resource."""

    api_version: Literal["pgwarden.io/v1alpha1"] = "pgwarden.io/v1alpha1"
    kind: Literal["DatabaseMigrationSet"] = "DatabaseMigrationSet"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseMigrationSetSpec
    status: DatabaseMigrationSetStatus | None = None
