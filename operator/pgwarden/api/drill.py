"""The report of a restore drill: a backup restored into a scratch database and compared with its manifest.

What `pgwarden verify-backup --json` prints and what a DatabaseBackup's `status.lastVerifiedBackup` can be
mapped from: which backup, when, how long its restore took (the recovery time to plan with), and what differed.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.reports import BackupInfo, ErrorInfo, Outcome, Recovered, RestoreComparison


class DrillReport(ApiModel):
    """One restore drill."""

    outcome: Outcome = Field(
        description="Succeeded: the restored copy matched its manifest; Failed otherwise."
    )
    backup: BackupInfo | None = Field(
        default=None, description="The backup drilled (the newest complete one)."
    )
    server: str | None = Field(
        default=None, description="Where the scratch copy was restored: user@host:port/dbname, no password."
    )
    scratch_database: str | None = Field(
        default=None, description="The scratch database, dropped afterwards."
    )
    scratch_dropped: bool | None = Field(default=None, description="Whether the scratch database is gone.")
    tables: int | None = Field(default=None, description="Tables in the restored copy.")
    rows: int | None = Field(default=None, description="Rows in the restored copy (exact counts).")
    verification: RestoreComparison | None = Field(
        default=None, description="Tables, per-table rows and schema fingerprint compared with the manifest."
    )
    marked_verified: bool | None = Field(
        default=None, description="The manifest now records the backup as verified (only when it matched)."
    )
    restore_seconds: float | None = Field(
        default=None,
        description="How long the restore took, checksum to last row: the recovery time to plan with.",
    )
    recovered: Recovered | None = Field(
        default=None, description="Scratch databases of dead runs on the server, dropped before this drill."
    )
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None
