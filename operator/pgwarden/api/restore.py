"""DatabaseRestore: put a backup back into a database, and say whether the result matches the backup."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from pgwarden.api.base import ApiModel
from pgwarden.api.choices import RestoreRowCounts as RestoreRowCounts
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
    validations,
)
from pgwarden.api.encryption import RestoreEncryption
from pgwarden.api.reports import (
    BackupInfo,
    BeforeAfter,
    Difference,
    RecoveryStatus,
    RestoredTable,
    RestoreOnly,
)

_ONE_SOURCE = "source needs exactly one of backupRef or location"
_LOCATION_NEEDS_STORAGE = "source.location needs source.storage: where the backup lives"
_STORAGE_NEEDS_LOCATION = (
    "source.storage goes with source.location; a backupRef uses its DatabaseBackup's storage"
)


class BackupRef(ApiModel):
    """A backup made by a DatabaseBackup in the same namespace."""

    name: ObjectName = Field(description="Name of the DatabaseBackup.")
    id: str = Field(
        default="latest",
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="latest (the newest complete backup) or a backup id from the DatabaseBackup's status.",
    )
    copy_index: int | None = Field(
        default=None,
        alias="copy",
        ge=0,
        le=3,
        description=(
            "Restore from the DatabaseBackup's further copy spec.copies[N] (0 is the first) instead of its "
            "storage, e.g. when the primary storage is lost. Unset: its storage."
        ),
    )


class RestoreSource(ApiModel):
    """Which backup to restore: a DatabaseBackup's, or one at a location in some storage."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.backupRef) != has(self.location)", _ONE_SOURCE),
            cel("!has(self.location) || has(self.storage)", _LOCATION_NEEDS_STORAGE),
            cel("!has(self.storage) || has(self.location)", _STORAGE_NEEDS_LOCATION),
        )
    )

    backup_ref: BackupRef | None = Field(default=None, description="A backup made by a DatabaseBackup.")
    location: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description=(
            "The backup's location as a DatabaseBackup's status shows it (e.g. s3://backups/shop/<id>), "
            "or its path relative to the storage's prefix or volume path."
        ),
    )
    storage: StorageSpec | None = Field(default=None, description="The storage holding location.")

    @model_validator(mode="after")
    def _one_source(self) -> RestoreSource:
        if (self.backup_ref is None) == (self.location is None):
            raise ValueError(_ONE_SOURCE)
        if self.location is not None and self.storage is None:
            raise ValueError(_LOCATION_NEEDS_STORAGE)
        if self.storage is not None and self.location is None:
            raise ValueError(_STORAGE_NEEDS_LOCATION)
        return self


class RestoreVerify(ApiModel):
    """How the restored database is compared with the backup's manifest."""

    row_counts: RestoreRowCounts = Field(
        default="exact",
        description=(
            "exact: every restored table's rows are counted and compared with the backup's manifest. "
            "estimate: the restored tables are analyzed and their planner estimates reported; only tables "
            "missing or extra (and the schema) are differences. none: rows are not counted; only tables "
            "missing or extra (and the schema) are differences."
        ),
    )


# A restore runs once; what defines it cannot change afterwards (jobTemplate may: it no longer matters).
IMMUTABLE_MESSAGE = (
    "a DatabaseRestore runs once, so what it restores cannot change after creation; "
    "create a new DatabaseRestore to restore again"
)
_IMMUTABLE = validations(cel("self == oldSelf", IMMUTABLE_MESSAGE))
RENAME_SUFFIX_PATTERN = r"^[A-Za-z0-9_$]{1,32}$"
_SUFFIX_NEEDS_ONLY = "renameSuffix goes with only: a whole backup is restored under its own names"
_ONLY_NEEDS_A_NAME = "only needs at least one schema or table"
_ONLY_NOT_CREATED = (
    "only restores into a database that exists; drop createDatabase (create the database first)"
)


class DatabaseRestoreSpec(ApiModel):
    """Restore one backup into a database: the one it came from, or another. Runs once."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!has(self.renameSuffix) || has(self.only)", _SUFFIX_NEEDS_ONLY, ".renameSuffix"),
            cel(
                "!has(self.only) || (has(self.only.schemas) && size(self.only.schemas) > 0) "
                "|| (has(self.only.tables) && size(self.only.tables) > 0)",
                _ONLY_NEEDS_A_NAME,
                ".only",
            ),
            cel(
                "!has(self.only) || !has(self.createDatabase) || !self.createDatabase",
                _ONLY_NOT_CREATED,
                ".only",
            ),
        )
    )

    database: DatabaseRef = Field(description="The database to restore into.", json_schema_extra=_IMMUTABLE)
    source: RestoreSource = Field(description="The backup to restore.", json_schema_extra=_IMMUTABLE)
    create_database: bool = Field(
        default=False,
        description="Create the database named in the Secret first when it does not exist.",
        json_schema_extra=_IMMUTABLE,
    )
    clean: bool = Field(
        default=False,
        description="Drop the backup's objects before recreating them (pg_restore --clean).",
        json_schema_extra=_IMMUTABLE,
    )
    terminate_connections: bool = Field(
        default=False,
        description="Terminate other sessions on the database before restoring.",
        json_schema_extra=_IMMUTABLE,
    )
    parallel_jobs: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Tables restored at once (pg_restore -j).",
        json_schema_extra=_IMMUTABLE,
    )
    encryption: RestoreEncryption | None = Field(
        default=None,
        description="The age identity that opens a sealed backup. Unset: the backup must not be sealed.",
        json_schema_extra=_IMMUTABLE,
    )
    verify: RestoreVerify = Field(
        default_factory=RestoreVerify,
        description="How the result is compared with the backup.",
        json_schema_extra=_IMMUTABLE,
    )
    only: RestoreOnly | None = Field(
        default=None,
        description=(
            "Restore only these schemas (whole) and tables (with their indexes, constraints, triggers, owned "
            "sequences and data) into the existing database, in one transaction; every other table is left "
            "as it is. Names the database has already are refused unless renameSuffix or clean. A foreign key "
            "to a table not restored is left out (status says which). The rows of each are compared with the "
            "backup's. Needs CREATEDB: the chosen part is restored into a scratch database on the same "
            "server first. Unset: the whole backup."
        ),
        json_schema_extra=_IMMUTABLE,
    )
    rename_suffix: str | None = Field(
        default=None,
        pattern=RENAME_SUFFIX_PATTERN,
        description=(
            "With only: append this (e.g. _restored) to the restored tables, their partitions, indexes, "
            "constraints and sequences (a schema restored whole: to the schema), so yesterday's orders stand "
            "beside today's as orders_restored."
        ),
        json_schema_extra=_IMMUTABLE,
    )
    job_template: JobTemplate = Field(default_factory=JobTemplate, description="Settings of the restore Job.")

    @model_validator(mode="after")
    def _only_what_is_named(self) -> DatabaseRestoreSpec:
        if self.rename_suffix is not None and self.only is None:
            raise ValueError(_SUFFIX_NEEDS_ONLY)
        if self.only is not None and not (self.only.schemas or self.only.tables):
            raise ValueError(_ONLY_NEEDS_A_NAME)
        if self.only is not None and self.create_database:
            raise ValueError(_ONLY_NOT_CREATED)
        return self


class RestorePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class RestoreVerification(ApiModel):
    """Whether the restored tables and rows match the backup's manifest, and where not."""

    matches_backup: bool = Field(description="True when every table and row count matches.")
    differences: list[Difference] = Field(default_factory=list, description="What differs (capped).")


class DatabaseRestoreStatus(RunStatus):
    """What was restored and whether it matches the backup."""

    phase: RestorePhase | None = Field(default=None, description="Where the restore stands.")
    restored_from: BackupInfo | None = Field(default=None, description="The backup that was restored.")
    tables: BeforeAfter | None = Field(default=None, description="Number of user tables before and after.")
    rows: BeforeAfter | None = Field(
        default=None, description="Number of rows in user tables before and after."
    )
    verification: RestoreVerification | None = Field(
        default=None, description="The comparison with the backup."
    )
    restored_tables: list[RestoredTable] = Field(
        default_factory=list,
        description="With spec.only: each table restored, under which name, its rows against the backup's.",
    )
    left_out: list[str] = Field(
        default_factory=list,
        description="With spec.only: what belongs to a restored table but was not restored (a foreign key to a "
        "table not restored).",
    )
    recovered: RecoveryStatus | None = Field(
        default=None,
        description="When the restore's Job died without a report: the recovery Job the operator ran and what "
        "it settled.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready.", json_schema_extra=CONDITIONS_SCHEMA_EXTRA
    )


class DatabaseRestore(ApiModel):
    """A DatabaseRestore resource."""

    api_version: Literal["pgwarden.io/v1alpha1"] = "pgwarden.io/v1alpha1"
    kind: Literal["DatabaseRestore"] = "DatabaseRestore"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseRestoreSpec
    status: DatabaseRestoreStatus | None = None
