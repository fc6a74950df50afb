"""DatabaseMigration: the user's wish to bring one database to a schema version, and what came of it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from pgwarden.api.base import ApiModel
from pgwarden.api.common import (
    CONDITIONS_SCHEMA_EXTRA,
    Condition,
    DatabaseRef,
    JobTemplate,
    ObjectMeta,
    ObjectName,
    RunStatus,
    StorageSpec,
    cel,
    count_set,
    exactly_one_rule,
    validations,
)
from pgwarden.api.lint import LintFinding
from pgwarden.api.policy import MigrationPolicy, RollbackStrategy
from pgwarden.api.progress import MigrationProgress
from pgwarden.api.rehearsal import RehearsalSpec, RehearsalStatus
from pgwarden.api.reports import (
    AppliedMigration,
    BackupInfo,
    BeforeAfter,
    Drift,
    Outcome,
    RecoveryStatus,
    RollbackResult,
    RowChange,
    Verification,
)
from pgwarden.api.verify import VerifySpec

MIGRATION_FILE_PATTERN = r"^[Vv]?[0-9]+__?[^/]+\.sql$"
VERSION_PATTERN = r"^[0-9]+$"
_SOURCES = ["configMapRefs", "image", "inline"]
# Inline files travel in the Job's task, one environment variable, which Linux caps at 128 KiB: 96 Ki
# characters of SQL in all leave room for the rest of the spec and JSON escaping (the operator checks
# the exact size before it creates the Job).
INLINE_SQL_LIMIT = 96 * 1024
INLINE_TOO_LARGE = (
    f"inline migrations may hold at most {INLINE_SQL_LIMIT} characters of SQL in all (they travel in the "
    "Job's environment); put larger sets in a ConfigMap (configMapRefs) or an image"
)
_SOURCE_FIELDS = ["config_map_refs", "image", "inline"]


class ConfigMapRef(ApiModel):
    """A ConfigMap whose data keys are migration files."""

    name: ObjectName = Field(description="Name of a ConfigMap in the resource's namespace.")


class ImageSource(ApiModel):
    """Migration files baked into a container image."""

    image: str = Field(min_length=1, max_length=1024, description="Image holding the migration files.")
    path: str = Field(
        default="/migrations", max_length=1024, description="Directory of the migration files in the image."
    )


class InlineMigration(ApiModel):
    """One migration file written into the resource itself."""

    name: str = Field(
        max_length=255,
        pattern=MIGRATION_FILE_PATTERN,
        description="File name `<version>_<description>.sql`, e.g. 0001_init.sql; a down script ends .down.sql.",
    )
    sql: str = Field(min_length=1, description="The SQL of the migration.")


class MigrationsSource(ApiModel):
    """Where the migration files come from: exactly one of configMapRefs, image or inline."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                exactly_one_rule(_SOURCES),
                "migrations needs exactly one source: configMapRefs, image or inline",
            ),
            cel(
                f"!has(self.inline) || self.inline.map(m, size(m.sql)).sum() <= {INLINE_SQL_LIMIT}",
                INLINE_TOO_LARGE,
                ".inline",
            ),
        )
    )

    config_map_refs: list[ConfigMapRef] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description=(
            "ConfigMaps whose data keys are migration files (`0001_init.sql`, `0002_orders.sql`, ...); "
            "files from all of them are ordered by version together."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    image: ImageSource | None = Field(default=None, description="Migration files inside a container image.")
    inline: list[InlineMigration] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Migration files written here, for small sets.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _one_source(self) -> MigrationsSource:
        if count_set(self, _SOURCE_FIELDS) != 1:
            raise ValueError("migrations needs exactly one source: configMapRefs, image or inline")
        for field, key in (("config_map_refs", "name"), ("inline", "name")):
            names = [getattr(item, key) for item in getattr(self, field) or []]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"migrations.{field} lists {', '.join(duplicates)} more than once")
        if sum(len(item.sql) for item in self.inline or []) > INLINE_SQL_LIMIT:
            raise ValueError(INLINE_TOO_LARGE)
        return self


class BackupBefore(ApiModel):
    """A backup taken before the first migration runs; the restore rollback strategy restores it."""

    storage: StorageSpec = Field(
        description="Where the pre-migration backup is written: exactly one of s3 or volume."
    )


class RollbackSpec(ApiModel):
    """What to do when the run fails."""

    strategy: RollbackStrategy = Field(
        default=RollbackStrategy.TRANSACTION,
        description=(
            "transaction: roll back the run's transaction(s); down: run the .down.sql scripts of what this run "
            "applied, newest first; restore: restore the backupBefore backup (terminating connections); "
            "none: leave the database as the failure left it."
        ),
    )


class Approval(StrEnum):
    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


class DatabaseMigrationSpec(ApiModel):
    """Migrate one database to the newest (or targetVersion) version of its migration files."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.rollback) || !has(self.rollback.strategy) "
                "|| self.rollback.strategy != 'restore' || has(self.backupBefore)",
                "rollback.strategy restore needs backupBefore: the pre-migration backup is what gets restored",
                ".rollback.strategy",
            )
        )
    )

    database: DatabaseRef = Field(description="The database to migrate.")
    migrations: MigrationsSource = Field(
        description="Where the migration files come from: exactly one of configMapRefs, image or inline."
    )
    target_version: str | None = Field(
        default=None,
        max_length=32,
        pattern=VERSION_PATTERN,
        description="Migrate up to and including this version. Unset: the newest.",
    )
    baseline_version: str | None = Field(
        default=None,
        max_length=32,
        pattern=VERSION_PATTERN,
        description=(
            "For a database created before pgwarden: record migrations up to this version as applied "
            "without running them."
        ),
    )
    backup_before: BackupBefore | None = Field(
        default=None,
        description="Back the database up before migrating. Required by rollback.strategy restore.",
    )
    policy: MigrationPolicy = Field(
        default_factory=MigrationPolicy, description="Safety settings of the run."
    )
    verify: VerifySpec = Field(
        default_factory=VerifySpec,
        description="What must hold after the migrations, checked before COMMIT: a failure rolls the run back.",
    )
    rollback: RollbackSpec = Field(default_factory=RollbackSpec, description="What to do when the run fails.")
    approval: Approval = Field(
        default=Approval.AUTOMATIC,
        description=(
            "Automatic: run as soon as the resource changes. Manual: wait in phase AwaitingApproval, showing "
            "the files to run and their checksums in status.approval, until the resource is annotated "
            "pgwarden.io/approved=<generation> (kubectl annotate dbmig NAME pgwarden.io/approved=N --overwrite; "
            "files from ConfigMaps are named too: N-<status.approval.digest>); "
            "an approval names one generation, so any later edit waits for its own."
        ),
    )
    rehearsal: RehearsalSpec | None = Field(
        default=None,
        description=(
            "Rehearse first: a Job restores a backup into a scratch database (dropped afterwards), runs the same "
            "plan and verification there and records durations, row changes and the locks each statement took "
            "in status.rehearsal, before the run is approved (approval: Manual) or started. The migration's "
            "database is only read."
        ),
    )
    job_template: JobTemplate = Field(
        default_factory=JobTemplate, description="Settings of the migration Job."
    )

    @model_validator(mode="after")
    def _rollback_has_a_backup(self) -> DatabaseMigrationSpec:
        if self.rollback.strategy == RollbackStrategy.RESTORE and self.backup_before is None:
            raise ValueError(
                "rollback.strategy restore needs backupBefore: the pre-migration backup is what gets restored"
            )
        return self


class MigrationPhase(StrEnum):
    PENDING = "Pending"
    REHEARSING = "Rehearsing"
    AWAITING_APPROVAL = "AwaitingApproval"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    CANCELLED = "Cancelled"


class ApprovalFile(ApiModel):
    """One migration file as it was shown for approval."""

    name: str = Field(description="The file name, e.g. 0002_orders.sql.")
    sha256: str = Field(description="SHA-256 of its content, as the history table records it.")


class ApprovalStatus(ApiModel):
    """What an approval of `approval: Manual` approves: one generation and the files it runs."""

    generation: int = Field(description="The generation to approve: pgwarden.io/approved=<generation>.")
    approved: bool = Field(description="True once that generation was approved and its Job created.")
    source: str = Field(
        description="Where the files come from: inline (checksums below), an image, or ConfigMaps."
    )
    files: list[ApprovalFile] = Field(
        default_factory=list,
        description="The files the Job runs, with their checksums: inline, or as the ConfigMaps held them.",
    )
    digest: str | None = Field(
        default=None,
        description=(
            "For ConfigMaps: a short name of exactly these files, which the approval names, since ConfigMaps are "
            "not part of the spec: pgwarden.io/approved=<generation>-<digest>."
        ),
    )


class PlanPreview(ApiModel):
    """The plan of a generation awaiting approval, read from the live database by a read-only Job: which
    files the run would apply and their lint (in status.lint). For approval: Manual without spec.rehearsal,
    whose rehearsal Job reads the same plan first."""

    generation: int = Field(description="The generation previewed.")
    digest: str | None = Field(
        default=None, description="For files from ConfigMaps: the digest of the files previewed."
    )
    job: str = Field(description="The read-only Job that plans and lints.")
    outcome: Outcome | None = Field(default=None, description="Succeeded or Failed; unset while it runs.")
    message: str | None = Field(default=None, description="What it found, or why it could not plan.")
    pending: list[str] = Field(default_factory=list, description="The versions the run would apply.")
    completed_at: datetime | None = Field(default=None, description="When the Job finished.")


class DatabaseMigrationStatus(RunStatus):
    """What the last run did; field names match `pgwarden migrate --json`."""

    phase: MigrationPhase | None = Field(default=None, description="Where the migration stands.")
    current_version: str | None = Field(default=None, description="The database's schema version.")
    applied: list[AppliedMigration] = Field(
        default_factory=list, description="Migrations the last run applied."
    )
    pending: list[str] = Field(default_factory=list, description="Migrations not yet applied.")
    tables: BeforeAfter | None = Field(default=None, description="Number of user tables before and after.")
    rows: BeforeAfter | None = Field(
        default=None, description="Number of rows in user tables before and after."
    )
    row_changes: list[RowChange] = Field(
        default_factory=list, description="Tables whose row count changed (capped)."
    )
    verification: Verification | None = Field(default=None, description="Checks made before COMMIT.")
    backup: BackupInfo | None = Field(default=None, description="The backup taken before migrating.")
    rollback: RollbackResult | None = Field(default=None, description="What was done when the run failed.")
    drift: Drift | None = Field(
        default=None, description="Schema changes made outside pgwarden since last run."
    )
    lint: list[LintFinding] = Field(
        default_factory=list,
        description="Lock-risk findings of the pending files: rule, file, line and message (capped).",
    )
    warnings: list[str] = Field(default_factory=list, description="Warnings of the last run's plan.")
    approval: ApprovalStatus | None = Field(
        default=None, description="For approval: Manual, what is (or was) approved."
    )
    preview: PlanPreview | None = Field(
        default=None,
        description=(
            "Before a Manual migration without a rehearsal is approved: its plan and lint, read from the database "
            "(never for a set's child: the set is approved once, and its rollout starts each child)."
        ),
    )
    rehearsal: RehearsalStatus | None = Field(
        default=None, description="The rehearsal of this generation on a scratch copy (spec.rehearsal)."
    )
    recovered: RecoveryStatus | None = Field(
        default=None,
        description="When the run's Job died without a report (OOMKilled, past its deadline, its Pod or node "
        "gone): the recovery Job the operator ran and what it settled.",
    )
    progress: MigrationProgress | None = Field(
        default=None,
        description=(
            "While the run's Job runs a statement for more than a few seconds: which migration, file and line, "
            "and for an index build its phase and blocks and tuples done, read from the Job's log at a bounded "
            "rate; gone once the run ends."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Drifted.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )


class DatabaseMigration(ApiModel):
    """A DatabaseMigration resource."""

    api_version: Literal["pgwarden.io/v1alpha1"] = "pgwarden.io/v1alpha1"
    kind: Literal["DatabaseMigration"] = "DatabaseMigration"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseMigrationSpec
    status: DatabaseMigrationStatus | None = None
