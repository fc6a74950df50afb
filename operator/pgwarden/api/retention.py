"""What a retention run decided, backup by backup: written by a backup Job (for the backup's own folder and for
each copy's), shown in a DatabaseBackup's status, listed by `pgwarden prune`. Apart from `api.backup` so that
a copy's report (`api.copies`) can carry it too."""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel


class RetentionDecision(ApiModel):
    """One backup retention kept or deleted, with the rules that kept it and why, in words."""

    id: str = Field(description="The backup's id.")
    rules: list[str] = Field(
        default_factory=list,
        description="The rules that kept it: keepLast, keepDaily, keepWeekly, keepMonthly, keepYearly, "
        "maxAge, newestComplete, newestVerified or noRule. Empty for a deleted backup.",
    )
    reason: str = Field(description="Why it was kept (each rule's period) or deleted (what each rule said).")


class RetentionOutcome(ApiModel):
    """What the newest retention run decided under the resource's folder, backup by backup."""

    time_zone: str = Field(default="UTC", description="The calendar the daily to yearly rules counted on.")
    kept: list[RetentionDecision] = Field(default_factory=list, description="Backups kept, newest first.")
    kept_total: int | None = Field(default=None, description="How many were kept, when the list is cut.")
    deleted: list[RetentionDecision] = Field(
        default_factory=list, description="Backups this run deleted, newest first."
    )
    deleted_total: int | None = Field(
        default=None, description="How many were deleted, when the list is cut."
    )
