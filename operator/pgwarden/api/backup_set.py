"""DatabaseBackupSet: the same backups for many tenant databases, each its own DatabaseBackup and folder."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from pgwarden.api.backup import DatabaseBackupSpec
from pgwarden.api.base import ApiModel
from pgwarden.api.common import (
    CONDITIONS_SCHEMA_EXTRA,
    Condition,
    DatabaseRef,
    ObjectMeta,
    cel,
    validations,
)
from pgwarden.api.durations import Duration, parse_duration
from pgwarden.api.migration_set import NO_DATABASE, rules_of
from pgwarden.api.sets import LISTED_LIMIT, SetStatus, SetTargets

# Staggering shifts a schedule's minute (and hour): it needs both as plain numbers, or every hour.
STAGGER_SCHEDULE_PATTERN = "^[0-9]{1,2} +([0-9]{1,2}(,[0-9]{1,2})*|[*]) "
STAGGER_NEEDS_SCHEDULE = (
    "stagger needs template.schedule with a number as its minute and numbers or * as its hour, e.g. "
    "'0 2 * * *' or '15 * * * *': each target's backups start at that time plus an offset within the window"
)
STAGGER_HOURLY_WINDOW = "stagger.window of an hourly schedule (hour *) is at most 1h"
STAGGER_WINDOW_LIMIT = timedelta(hours=24)


class BackupTemplate(DatabaseBackupSpec):
    """The spec of every child DatabaseBackup, without `database`: schedule, retention, verification, copies.

    Each child writes under its own folder `<prefix>/<namespace>/<child name>/` of the storage, so targets
    sharing the bucket never prune or restore each other's backups."""

    model_config = ConfigDict(
        json_schema_extra=validations(*rules_of(DatabaseBackupSpec), cel("!has(self.database)", NO_DATABASE))
    )

    database: DatabaseRef | None = Field(  # type: ignore[assignment]
        default=None, description="Never set in a template: each target's Secret is its database."
    )

    @model_validator(mode="after")
    def _no_database(self) -> BackupTemplate:
        if self.database is not None:
            raise ValueError(NO_DATABASE)
        return self


class ScheduleStagger(ApiModel):
    """Spread the targets' scheduled backups over a window, so that hundreds of dumps do not start at once."""

    window: Duration = Field(
        description=(
            "Each target's schedule is shifted by an offset within this window (e.g. 2h), the same for the same "
            "Secret name every time; the hour wraps around midnight. At most 24h; 1h for an hourly schedule."
        )
    )

    @field_validator("window")
    @classmethod
    def _bounded(cls, window: str) -> str:
        span = parse_duration(window)
        if not timedelta(minutes=1) <= span <= STAGGER_WINDOW_LIMIT:
            raise ValueError("stagger.window is between 1m and 24h")
        return window


class DatabaseBackupSetSpec(ApiModel):
    """Back every target database up with one spec, each as a DatabaseBackup of its own."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.stagger) || (has(self.template.schedule) "
                f"&& self.template.schedule.matches('{STAGGER_SCHEDULE_PATTERN}'))",
                STAGGER_NEEDS_SCHEDULE,
                ".stagger",
            )
        )
    )

    template: BackupTemplate = Field(
        description="The spec of every child DatabaseBackup (storage, schedule, retention, verify, copies), "
        "without database."
    )
    targets: SetTargets = Field(description="The databases: Secrets chosen by a label selector, or listed.")
    stagger: ScheduleStagger | None = Field(
        default=None, description="Spread the targets' schedules over a window. Unset: all at the schedule."
    )

    @model_validator(mode="after")
    def _staggerable(self) -> DatabaseBackupSetSpec:
        if self.stagger is None:
            return self
        schedule = self.template.schedule or ""
        if not re.match(STAGGER_SCHEDULE_PATTERN, schedule):
            raise ValueError(STAGGER_NEEDS_SCHEDULE)
        hourly = schedule.split()[1] == "*"
        if hourly and parse_duration(self.stagger.window) > timedelta(hours=1):
            raise ValueError(STAGGER_HOURLY_WINDOW)
        return self


class BackupTargetCounts(ApiModel):
    """How many targets' backups stand where (their children's status)."""

    total: int = Field(default=0, description="Targets of the set.")
    done: str = Field(
        default="0/0", description="Targets with a backup out of total, as `kubectl get` shows it."
    )
    backed_up: int = Field(default=0, description="Targets with at least one complete backup.")
    stale: int = Field(default=0, description="Targets whose last backup is older than staleAfter (Stale).")
    unverified: int = Field(default=0, description="Targets with no verified restore of their backups.")
    failed: int = Field(default=0, description="Targets whose last backup run failed.")
    pending: int = Field(default=0, description="Targets with no backup yet and no failure.")


class DatabaseBackupSetStatus(SetStatus):
    """Counts and names, never per-target details: those are in the children (`kubectl get dbbackup -l
    pgwarden.io/set=<name>`)."""

    targets: BackupTargetCounts | None = Field(default=None, description="How many targets stand where.")
    newest_backup: datetime | None = Field(default=None, description="The newest last backup of any target.")
    oldest_backup: datetime | None = Field(
        default=None,
        description="The oldest last backup among targets that have one: how far behind the fleet is.",
    )
    stale: list[str] = Field(
        default_factory=list, description=f"Targets whose backups are stale (at most {LISTED_LIMIT})."
    )
    stale_total: int | None = Field(default=None, description="How many targets are stale in all.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready and Stale.", json_schema_extra=CONDITIONS_SCHEMA_EXTRA
    )


class DatabaseBackupSet(ApiModel):
    """A DatabaseBackupSet resource."""

    api_version: Literal["pgwarden.io/v1alpha1"] = "pgwarden.io/v1alpha1"
    kind: Literal["DatabaseBackupSet"] = "DatabaseBackupSet"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseBackupSetSpec
    status: DatabaseBackupSetStatus | None = None
