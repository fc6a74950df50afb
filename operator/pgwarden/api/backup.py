"""DatabaseBackup: one backup or a schedule of them, with retention, and what the runs produced."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime
from enum import StrEnum
from typing import Literal

from croniter import CroniterBadDateError, croniter
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from pgwarden.api.base import ApiModel
from pgwarden.api.choices import DEFAULT_LOCK_WAIT_TIMEOUT as DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.api.choices import BackupFormat as BackupFormat
from pgwarden.api.common import (
    CONDITIONS_SCHEMA_EXTRA,
    Condition,
    DatabaseRef,
    JobTemplate,
    ObjectMeta,
    ResourceStatus,
    StorageSpec,
    cel,
    validations,
)
from pgwarden.api.durations import Duration
from pgwarden.api.encryption import BackupEncryption, Sealing
from pgwarden.api.reports import BackupInfo, Difference, Outcome
from pgwarden.api.retention import RetentionOutcome

# Five cron fields or a macro; croniter (in the validator) checks the values, this only the shape.
_CRON_FIELD = r"[-0-9A-Za-z*/,?]+"
SCHEDULE_PATTERN = (
    rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|{_CRON_FIELD}( +{_CRON_FIELD}){{4}})$"
)
SCHEDULE_MESSAGE = "schedule must be a cron expression of 5 fields, e.g. '0 2 * * *' (02:00 daily), or @daily"
# Schedules the apiserver can see never fire: a 30th or 31st only in months too short for it.
_SHORT_MONTH = "0?[2469]|11|[Ff][Ee][Bb]|[Aa][Pp][Rr]|[Jj][Uu][Nn]|[Ss][Ee][Pp]|[Nn][Oo][Vv]"
NEVER_FIRES_PATTERN = rf"^[^ ]+ +[^ ]+ +((30|31|30,31|31,30) +(0?2|[Ff][Ee][Bb])|31 +({_SHORT_MONTH})(,({_SHORT_MONTH}))*) +[*?]$"
NEVER_FIRES_MESSAGE = (
    "schedule never fires: no month it names has that day (e.g. 30 February); pick a day every month "
    "named has, e.g. '0 2 28 2 *'"
)
# A schedule must fire within this many years from any moment (a 29 February does within 4).
_MAX_YEARS_BETWEEN_RUNS = 8
COMPRESSION_PATTERN = r"^(zstd(:([1-9]|1[0-9]))?|lz4|gzip(:[1-9])?|none)$"


@functools.cache
def known_time_zones() -> frozenset[str]:
    """The IANA time zones this machine knows. Read once: listing them walks the zoneinfo tree (~40 ms), which
    every reconcile of a scheduled backup would otherwise pay when it reads the spec."""
    return frozenset(zoneinfo.available_timezones())


_RETENTION_RULES = ("keepLast", "keepDaily", "keepWeekly", "keepMonthly", "keepYearly", "maxAge")
_RETENTION_NEEDS_A_RULE = "retention needs at least one of " + ", ".join(_RETENTION_RULES)


class Retention(ApiModel):
    """Which backups to keep: a backup any rule keeps is kept, and each kept or deleted backup is reported
    with the rules behind it. Calendar rules count the days, ISO weeks, months and years of spec.timeZone
    (UTC when unset) that have a backup, keeping the newest backup of each; a period without one costs no
    slot. The newest complete and the newest verified backup are never deleted."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(" || ".join(f"has(self.{rule})" for rule in _RETENTION_RULES), _RETENTION_NEEDS_A_RULE)
        )
    )

    keep_last: int | None = Field(
        default=None, ge=1, description="Keep at least the newest N complete backups."
    )
    keep_daily: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the N most recent days with one."
    )
    keep_weekly: int | None = Field(
        default=None,
        ge=1,
        description="Keep the newest backup of each of the N most recent ISO weeks (Monday to Sunday) with one.",
    )
    keep_monthly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the N most recent months with one."
    )
    keep_yearly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the N most recent years with one."
    )
    max_age: Duration | None = Field(
        default=None, description="Keep every backup younger than this, e.g. 7d, 12h, 30m."
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Retention:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(_RETENTION_NEEDS_A_RULE)
        return self


def schedule_rules(what: str = "schedule", *, required: bool = False) -> tuple[JsonDict, JsonDict]:
    """The CEL rules `check_schedule` mirrors at `kubectl apply`, on a `schedule` field (unset passes unless
    `required`): a cron expression of 5 fields, and one that fires; the messages name the field `what`."""
    unset = "" if required else "!has(self.schedule) || "
    return (
        cel(
            f"{unset}self.schedule.matches('{SCHEDULE_PATTERN}')",
            SCHEDULE_MESSAGE.replace("schedule", what, 1),
            ".schedule",
        ),
        cel(
            f"{unset}!self.schedule.matches('{NEVER_FIRES_PATTERN}')",
            NEVER_FIRES_MESSAGE.replace("schedule", what, 1),
            ".schedule",
        ),
    )


def check_schedule(schedule: str, what: str = "schedule") -> str:
    """A cron schedule croniter accepts and that fires; ValueError saying what to write instead."""
    if not re.fullmatch(SCHEDULE_PATTERN, schedule) or not croniter.is_valid(schedule):
        raise ValueError(f"{SCHEDULE_MESSAGE.replace('schedule', what, 1)}; got {schedule!r}")
    try:  # what the CEL rule cannot see, e.g. '0 0 31 4,6 *'; any start will do, cron has no years
        start = datetime(2000, 1, 1)
        croniter(schedule, start, max_years_between_matches=_MAX_YEARS_BETWEEN_RUNS).get_next(datetime)
    except CroniterBadDateError as exc:
        raise ValueError(
            f"{what} {schedule!r} never fires: no month it names has that day; pick a day every month "
            "named has, e.g. '0 2 28 2 *'"
        ) from exc
    return schedule


class BackupVerify(ApiModel):
    """How backups are proven usable: right after each one (restore), and by restore drills on a schedule."""

    model_config = ConfigDict(json_schema_extra=validations(*schedule_rules("verify.schedule")))

    restore: bool = Field(
        default=False,
        description="Restore each backup into a scratch database and compare its tables and rows with the source.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "Restore drills: a cron schedule (its own CronJob, in spec.timeZone) on which the newest complete "
            "backup is restored into a scratch database, compared with its manifest (tables, exact rows, "
            "schema), timed, marked verified and dropped. The backed-up database is never connected to."
        ),
    )
    server: DatabaseRef | None = Field(
        default=None,
        description=(
            "The server drills restore on (a scratch database <db>_pgw_drill_<id> is created and dropped "
            "there; the role needs CREATEDB). Unset: the server of spec.database."
        ),
    )
    copy_index: int | None = Field(
        default=None,
        alias="copy",
        ge=0,
        le=3,
        description="Drill the further copy spec.copies[N] (0 is the first) instead of the primary storage.",
    )
    stale_after: Duration | None = Field(
        default=None,
        description=(
            "Set the Stale condition (and Verified false) when no drill succeeded for longer than this, e.g. "
            "8d. Unset: twice the interval between drills."
        ),
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        return None if schedule is None else check_schedule(schedule, "verify.schedule")


_VERIFY_NEEDS_IDENTITY = (
    "verify.restore and restore drills (verify.schedule) of an encrypted backup restore it, which needs "
    "encryption.identitySecretRef (an identity of one of the recipients); add it, or leave both out"
)
_DRILL_COPY_MISSING = "verify.copy names a copy spec.copies does not have (0 is the first)"
# Copies a backup is written to besides its storage; each is a full backup with its own retention.
COPIES_LIMIT = 4


class BackupCopyTarget(ApiModel):
    """A further storage every complete backup is copied to, verified there by checksum, pruned by its own
    retention. The copy lands in the resource's own folder there too (`<prefix>/<namespace>/<name>/<id>`)."""

    storage: StorageSpec = Field(description="Where the copy goes: exactly one of s3 or volume.")
    retention: Retention | None = Field(
        default=None, description="Which copies to keep there. Unset: keep all."
    )


class ObjectSelection(ApiModel):
    """Schemas and tables, as pg_dump patterns (e.g. `public`, `audit_*`, `shop.orders`)."""

    schemas: list[str] = Field(default_factory=list, max_length=256, description="Schema name patterns.")
    tables: list[str] = Field(default_factory=list, max_length=1024, description="Table name patterns.")


class DatabaseBackupSpec(ApiModel):
    """Back one database up once, or on a schedule when `schedule` is set."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *schedule_rules(),
            cel(
                "!has(self.parallelJobs) || self.parallelJobs <= 1 "
                "|| (has(self.format) && self.format == 'directory')",
                "parallelJobs above 1 needs format: directory (pg_dump dumps in parallel only to a directory)",
                ".parallelJobs",
            ),
            cel(
                "!has(self.encryption) || has(self.encryption.identitySecretRef) || !has(self.verify) "
                "|| ((!has(self.verify.restore) || !self.verify.restore) && !has(self.verify.schedule))",
                _VERIFY_NEEDS_IDENTITY,
                ".encryption",
            ),
            cel(
                "!has(self.verify) || !has(self.verify.copy) "
                "|| (has(self.copies) && self.verify.copy < size(self.copies))",
                _DRILL_COPY_MISSING,
                ".verify.copy",
            ),
        )
    )

    database: DatabaseRef = Field(description="The database to back up.")
    storage: StorageSpec = Field(description="Where backups are written: exactly one of s3 or volume.")
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description="Cron schedule, e.g. '0 2 * * *'. Unset: one backup, now. Runs as a Kubernetes CronJob.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of the schedule, e.g. Europe/Berlin. Unset: the controller manager's.",
    )
    suspend: bool = Field(default=False, description="Pause the schedule; running backups finish.")
    format: BackupFormat = Field(
        default=BackupFormat.CUSTOM,
        description="custom: one archive file; directory: one file per table, dumped in parallel.",
    )
    compression: str = Field(
        default="zstd:3",
        max_length=16,
        pattern=COMPRESSION_PATTERN,
        description="zstd[:1-19], lz4, gzip[:1-9] or none. Done by pgwarden on the stream, on several cores.",
    )
    parallel_jobs: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Tables dumped at once (pg_dump -j); above 1 needs format directory.",
    )
    retention: Retention | None = Field(
        default=None, description="Which backups to keep under the storage prefix. Unset: keep all."
    )
    verify: BackupVerify = Field(
        default_factory=BackupVerify, description="How each backup is proven usable."
    )
    stale_after: Duration | None = Field(
        default=None,
        description=(
            "Set the Stale condition when the last successful backup is older than this, e.g. 26h. "
            "Unset: twice the interval between scheduled runs."
        ),
    )
    lock_wait_timeout: Duration = Field(
        default=DEFAULT_LOCK_WAIT_TIMEOUT,
        description=(
            "How long the backup waits for a table lock another session holds (an ALTER TABLE, VACUUM FULL, "
            "LOCK TABLE) before it fails, leaving nothing behind (pg_dump --lock-wait-timeout), e.g. 30s, "
            "5m. 0s waits for ever."
        ),
    )
    encryption: BackupEncryption | None = Field(
        default=None,
        description=(
            "Seal the backups with age (client-side, after compression): the storage holds only ciphertext, "
            "and restoring needs an identity of one of the recipients. Unset: not sealed."
        ),
    )
    copies: list[BackupCopyTarget] = Field(
        default_factory=list,
        max_length=COPIES_LIMIT,
        description=(
            "Further storages each complete backup is copied to (server-side within one S3 service, else "
            "streamed), read back and checked by SHA-256 there; a failed copy fails the run, the backup kept."
        ),
    )
    include: ObjectSelection | None = Field(default=None, description="Dump only these schemas and tables.")
    exclude: ObjectSelection | None = Field(default=None, description="Leave these schemas and tables out.")
    job_template: JobTemplate = Field(default_factory=JobTemplate, description="Settings of the backup Jobs.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        return None if schedule is None else check_schedule(schedule)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        # Only where this machine knows time zones at all; the apiserver's CronJob validation is the backstop.
        known = known_time_zones()
        if zone is not None and known and zone not in known:
            raise ValueError(f"timeZone {zone!r} is not an IANA time zone, e.g. Europe/Berlin or UTC")
        return zone

    @model_validator(mode="after")
    def _restoring_needs_identity(self) -> DatabaseBackupSpec:
        restores = self.verify.restore or self.verify.schedule is not None
        if self.encryption and not self.encryption.identity_secret_ref and restores:
            raise ValueError(_VERIFY_NEEDS_IDENTITY)
        if self.verify.copy_index is not None and self.verify.copy_index >= len(self.copies):
            raise ValueError(_DRILL_COPY_MISSING)
        return self

    @model_validator(mode="after")
    def _parallel_needs_directory(self) -> DatabaseBackupSpec:
        if self.parallel_jobs > 1 and self.format != BackupFormat.DIRECTORY:
            raise ValueError(
                "parallelJobs above 1 needs format: directory (pg_dump dumps in parallel only to a directory)"
            )
        return self


class BackupPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class CopyStatus(ApiModel):
    """One further copy of the newest backup: where, and whether it was read back and matched its checksum."""

    location: str = Field(description="The copy's backup folder: s3://bucket/prefix/<namespace>/<name>/<id>.")
    sha256: str | None = Field(default=None, description="SHA-256 of the copied dump, checked there.")
    verified: bool = Field(description="Every copied object was read back there and matched its checksum.")
    retained: int | None = Field(default=None, description="Complete copies kept there after its retention.")
    error: str | None = Field(default=None, description="Why the copy failed.")


class LastBackup(BackupInfo):
    """The newest complete backup: where it is, how big, what it holds."""

    size: str | None = Field(
        default=None,
        description="sizeBytes as people read it (IEC units, e.g. 3.1 KiB): kubectl get shows it.",
    )
    tables: int | None = Field(default=None, description="Number of user tables in the backup.")
    rows: int | None = Field(default=None, description="Number of rows in those tables.")
    started_at: datetime | None = Field(default=None, description="When the Job started (UTC).")
    completed_at: datetime | None = Field(default=None, description="When the Job finished (UTC).")
    duration_seconds: float | None = Field(default=None, description="How long the work took.")
    encryption: Sealing | None = Field(
        default=None, description="How it is sealed: age, to the recipients' public keys. Unset: not sealed."
    )
    copies: list[CopyStatus] = Field(
        default_factory=list, description="Its further copies, one per spec.copies."
    )


class VerifiedBackup(ApiModel):
    """The last restore drill: which backup it restored, when, how long that took, and what it found."""

    id: str | None = Field(default=None, description="The backup drilled (the newest complete one).")
    location: str | None = Field(default=None, description="Where that backup lives.")
    time: datetime | None = Field(default=None, description="When the drill finished (UTC).")
    duration_seconds: float | None = Field(default=None, description="How long the whole drill took.")
    restore_seconds: float | None = Field(
        default=None, description="How long the restore took: the recovery time to plan with."
    )
    outcome: Outcome = Field(
        description="Succeeded: the restored copy matched its manifest; Failed otherwise."
    )
    tables: int | None = Field(default=None, description="Tables in the restored copy.")
    rows: int | None = Field(default=None, description="Rows in the restored copy (exact counts).")
    differences: list[Difference] = Field(
        default_factory=list, description="What differed from the manifest (capped)."
    )
    message: str | None = Field(default=None, description="A one-line summary or the error.")
    job: str | None = Field(default=None, description="The drill's Job.")


class BackupRun(ApiModel):
    """One run of the backup Job, successful or not."""

    job: str | None = Field(default=None, description="Name of the Job.")
    outcome: Outcome | None = Field(default=None, description="Succeeded or Failed.")
    id: str | None = Field(default=None, description="The backup's id, when one was written.")
    location: str | None = Field(
        default=None, description="Where the backup lives: s3://bucket/prefix/id or a path."
    )
    size_bytes: int | None = Field(default=None, description="Size of the stored (compressed) dump.")
    started_at: datetime | None = Field(default=None, description="When the Job started (UTC).")
    completed_at: datetime | None = Field(default=None, description="When the Job finished (UTC).")
    duration_seconds: float | None = Field(default=None, description="How long the work took.")
    message: str | None = Field(default=None, description="A one-line summary or the error.")


class DatabaseBackupStatus(ResourceStatus):
    """What the backups produced and when the next one is due."""

    phase: BackupPhase | None = Field(default=None, description="Where the backup stands.")
    last_backup: LastBackup | None = Field(default=None, description="The newest complete backup.")
    last_successful_time: datetime | None = Field(default=None, description="When the last backup succeeded.")
    next_schedule_time: datetime | None = Field(default=None, description="When the next backup is due.")
    history: list[BackupRun] = Field(default_factory=list, description="The last runs, newest first.")
    retained: int | None = Field(default=None, description="Complete backups kept under the storage prefix.")
    retention: RetentionOutcome | None = Field(
        default=None, description="The newest retention run: each backup kept or deleted, with the rules why."
    )
    last_verified_backup: VerifiedBackup | None = Field(
        default=None, description="The last restore drill (verify.schedule), succeeded or not."
    )
    last_verified_time: datetime | None = Field(
        default=None, description="When a restore drill last succeeded: the newest backup proven to restore."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Stale, Suspended and, with restore drills, Verified.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
    job: str | None = Field(default=None, description="Name of the Job running now, or of the last one.")


class DatabaseBackup(ApiModel):
    """A DatabaseBackup resource."""

    api_version: Literal["pgwarden.io/v1alpha1"] = "pgwarden.io/v1alpha1"
    kind: Literal["DatabaseBackup"] = "DatabaseBackup"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseBackupSpec
    status: DatabaseBackupStatus | None = None
