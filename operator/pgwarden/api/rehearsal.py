"""The rehearsal of a migration run on a scratch copy restored from a backup: what it did and the locks it took.

Shared by the command line's report (`rehearsal`) and, later, a DatabaseMigration's status.
"""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.reports import (
    AppliedMigration,
    ErrorInfo,
    MigrationReport,
    Outcome,
    RowChange,
    Verification,
)


class LockTaken(ApiModel):
    """A lock a rehearsed statement took on a relation, as sampled from pg_locks by a second session."""

    relation: str = Field(
        description="The table, as regclass names it (schema-qualified off the search_path)."
    )
    mode: str = Field(description="PostgreSQL's lock mode, e.g. AccessExclusiveLock.")
    migration: str | None = Field(
        default=None, description="The version whose statement first held or awaited it."
    )
    statement: str | None = Field(default=None, description="That statement as file:line.")
    held_seconds: float = Field(description="How long it was seen held (to the sampling interval).")
    waited_seconds: float = Field(
        default=0.0, description="How long it was seen awaited before being granted."
    )
    blocks_writes: bool = Field(description="Whether the mode blocks INSERT/UPDATE/DELETE on the relation.")


class Rehearsal(ApiModel):
    """The same plan and verification, run first on a scratch copy restored from a backup."""

    outcome: Outcome = Field(description="Succeeded, or Failed: then the real run did not start.")
    backup: str | None = Field(default=None, description="The backup restored into the scratch copy.")
    server: str | None = Field(default=None, description="Where the scratch copy lived (user@host:port/db).")
    duration_seconds: float | None = Field(default=None, description="Restore and run together.")
    restore_seconds: float | None = Field(default=None, description="Restoring the backup into the copy.")
    run_seconds: float | None = Field(default=None, description="Running the plan and verification on it.")
    applied: list[AppliedMigration] = Field(
        default_factory=list, description="What the rehearsal applied, with the time each migration took."
    )
    row_changes: list[RowChange] = Field(default_factory=list, description="Rows changed per table.")
    verification: Verification | None = Field(default=None, description="What was checked before COMMIT.")
    locks: list[LockTaken] = Field(
        default_factory=list, description="Locks the statements took, longest first."
    )
    max_lock_hold_seconds: float | None = Field(
        default=None,
        description="The limit on holding a lock that blocks writes; longer fails the rehearsal.",
    )
    error: ErrorInfo | None = Field(default=None, description="Why the rehearsal failed.")


MigrationReport.model_rebuild(_types_namespace={"Rehearsal": Rehearsal})
