"""Reports: what an operation did, printed by `--json`, written by Jobs, and mapped onto resource status.

Field names are the contract shared by the command line and the resources' `status` (DESIGN.md 2 and 4).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from pgwarden.api.base import ApiModel


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


class RollbackOutcome(StrEnum):
    NOT_NEEDED = "NotNeeded"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class BeforeAfter(ApiModel):
    """A number before and after the run (tables or rows)."""

    before: int | None = Field(default=None, description="Before the run.")
    after: int | None = Field(default=None, description="After the run (or after rollback).")


class RowChange(ApiModel):
    """One table whose row count changed (or that appeared or disappeared)."""

    table: str
    before: int | None = None
    after: int | None = None
    allowed_loss: bool | None = Field(default=None, description="Loss here was allowed by allowRowLossIn.")


class AppliedMigration(ApiModel):
    """A migration this run applied."""

    version: str
    description: str
    checksum: str
    duration_ms: int
    transactional: bool = True


class CheckResult(ApiModel):
    """The outcome of one verification item (a custom check, an expectation, or the row-loss rule)."""

    name: str
    passed: bool
    expected: str | None = None
    actual: str | None = None
    message: str | None = None


class Verification(ApiModel):
    """Everything checked before COMMIT, and whether it all held."""

    passed: bool
    checks: list[CheckResult] = Field(default_factory=list)


class RollbackResult(ApiModel):
    """What was tried when the run failed, and what came of it."""

    strategy: str
    outcome: RollbackOutcome
    message: str | None = None
    version_after: str | None = Field(default=None, description="The database's schema version afterwards.")


class BackupInfo(ApiModel):
    """A backup taken (or used) by the operation."""

    id: str
    location: str
    size_bytes: int | None = None
    sha256: str | None = None
    verified: bool | None = None


class ErrorInfo(ApiModel):
    message: str
    migration: str | None = Field(default=None, description="The migration (version) that failed, if any.")
    statement: str | None = Field(default=None, description="The start of the failing statement.")
    line: int | None = None


class Difference(ApiModel):
    """One schema difference: what kind of object, which one, and how it differs."""

    kind: str = Field(
        description="table, column, index, constraint, view, function, sequence, trigger, schema"
    )
    object: str = Field(description="Qualified name, e.g. public.orders.total")
    detail: str = Field(description="e.g. 'only in A', 'type integer -> bigint'")


class Drift(ApiModel):
    """Whether the live schema differs from the fingerprint recorded after the previous run."""

    detected: bool
    differences: list[Difference] = Field(default_factory=list)


class MigrationReport(ApiModel):
    """The report of one `pgwarden migrate` run."""

    outcome: Outcome
    database: str | None = Field(default=None, description="user@host:port/dbname, never the password.")
    plan_only: bool | None = None
    current_version: str | None = None
    tables: BeforeAfter = Field(default_factory=BeforeAfter)
    rows: BeforeAfter = Field(default_factory=BeforeAfter)
    row_counts: str | None = Field(default=None, description="exact, estimate or none")
    row_changes: list[RowChange] = Field(default_factory=list)
    applied: list[AppliedMigration] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    baselined: list[str] = Field(default_factory=list)
    plan: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    verification: Verification | None = None
    rollback: RollbackResult | None = None
    backup: BackupInfo | None = None
    drift: Drift | None = None
    error: ErrorInfo | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_seconds: float | None = None
