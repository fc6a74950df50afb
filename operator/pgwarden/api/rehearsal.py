"""A DatabaseMigration's spec.rehearsal and status.rehearsal: run the plan first on a scratch copy restored
from a backup. What a rehearsal found (`Rehearsal`, `LockTaken`) is a report, in `api/reports.py`."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, model_validator

from pgwarden.api.base import ApiModel
from pgwarden.api.common import SecretRef, StorageSpec, cel, validations
from pgwarden.api.durations import Duration
from pgwarden.api.encryption import RestoreEncryption
from pgwarden.api.reports import AppliedMigration, LockTaken, Outcome, RowChange
from pgwarden.api.restore import BackupRef

_REHEARSAL_SOURCE = "rehearsal needs exactly one of backupRef or location"
_REHEARSAL_LOCATION = "rehearsal.location needs rehearsal.storage: where the backup lives"
_REHEARSAL_STORAGE = "rehearsal.storage goes with rehearsal.location; a backupRef uses its DatabaseBackup's"


class RehearsalServer(ApiModel):
    """The server the scratch copy is restored on (a server the migration's database does not live on)."""

    secret_ref: SecretRef = Field(
        description=(
            "Secret holding either the key `uri` (postgresql://user:password@host:5432/postgres) or the keys "
            "`host`, `port`, `user` and `password` of a role that may create databases there. The operator "
            "never reads it."
        )
    )


class RehearsalSpec(ApiModel):
    """Rehearse the run first on a scratch copy restored from a backup: the approver sees how it went."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.backupRef) != has(self.location)", _REHEARSAL_SOURCE),
            cel("!has(self.location) || has(self.storage)", _REHEARSAL_LOCATION),
            cel("!has(self.storage) || has(self.location)", _REHEARSAL_STORAGE),
        )
    )

    backup_ref: BackupRef | None = Field(
        default=None, description="Restore a backup a DatabaseBackup made (by default its newest)."
    )
    location: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Or a backup (or a prefix holding backups: the newest) relative to storage's root.",
    )
    storage: StorageSpec | None = Field(default=None, description="The storage holding location.")
    encryption: RestoreEncryption | None = Field(
        default=None,
        description=(
            "The identity that opens a sealed backup. Unset: for a backupRef, its DatabaseBackup's "
            "encryption.identitySecretRef."
        ),
    )
    server: RehearsalServer | None = Field(
        default=None,
        description="Where the scratch copy is restored. Unset: the migration's own database server.",
    )
    max_lock_hold: Duration | None = Field(
        default=None,
        description="A lock that blocks writes held longer than this (e.g. 2s) fails the rehearsal.",
    )
    required: bool = Field(
        default=False,
        description=(
            "true: a failed rehearsal (an error, or a lock held longer than maxLockHold) stops the real run. "
            "false: it is shown in status.rehearsal and the run goes ahead."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> RehearsalSpec:
        if (self.backup_ref is None) == (self.location is None):
            raise ValueError(_REHEARSAL_SOURCE)
        if self.location is not None and self.storage is None:
            raise ValueError(_REHEARSAL_LOCATION)
        if self.storage is not None and self.location is None:
            raise ValueError(_REHEARSAL_STORAGE)
        return self


class RehearsalStatus(ApiModel):
    """The rehearsal of the current generation (and files): running, or what it found."""

    generation: int = Field(description="The generation rehearsed.")
    digest: str | None = Field(
        default=None, description="For files from ConfigMaps: the digest of the files rehearsed."
    )
    job: str = Field(description="The Job that rehearses.")
    outcome: Outcome | None = Field(default=None, description="Succeeded or Failed; unset while it runs.")
    message: str | None = Field(default=None, description="What happened, and why it failed.")
    backup: str | None = Field(default=None, description="The backup restored into the scratch copy.")
    duration_seconds: float | None = Field(default=None, description="Restore and run together.")
    restore_seconds: float | None = Field(default=None, description="Restoring the backup into the copy.")
    run_seconds: float | None = Field(default=None, description="Running the plan and verification on it.")
    applied: list[AppliedMigration] = Field(
        default_factory=list, description="Each migration rehearsed, with the time it took (durationMs)."
    )
    row_changes: list[RowChange] = Field(default_factory=list, description="Rows changed per table.")
    locks: list[LockTaken] = Field(
        default_factory=list, description="Locks the statements took, longest first (capped)."
    )
    max_lock_hold_seconds: float | None = Field(
        default=None,
        description="The limit on holding a lock that blocks writes (spec.rehearsal.maxLockHold).",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description=(
            "What the approver should know, e.g. that no restore drill had verified a backup, so the newest "
            "complete (unverified) one was rehearsed on."
        ),
    )
    completed_at: datetime | None = Field(default=None, description="When the rehearsal Job finished.")
