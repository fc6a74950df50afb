"""Reports: what an operation did, printed by `--json`, written by Jobs, and mapped onto resource status.

Field names are the contract shared by the command line and the resources' `status` (DESIGN.md 2 and 4).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.copies import BackupCopy
from pgwarden.api.encryption import Sealing
from pgwarden.api.lint import LintFinding


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

    table: str = Field(description="Qualified table name, e.g. shop.orders.")
    before: int | None = Field(
        default=None, description="Rows before the run; absent for a table the run created."
    )
    after: int | None = Field(
        default=None, description="Rows after the run; absent for a table the run dropped."
    )
    allowed_loss: bool | None = Field(default=None, description="Loss here was allowed by allowRowLossIn.")


class StatementCount(ApiModel):
    """How many of a migration file's statements are applied."""

    applied: int = Field(
        description="Statements applied (a file run outside a transaction may stop part-way)."
    )
    total: int = Field(description="Statements in the file.")


class AppliedMigration(ApiModel):
    """A migration this run applied."""

    version: str = Field(description="The migration's version, from its file name.")
    description: str = Field(description="The migration's description, from its file name.")
    checksum: str = Field(description="SHA-256 of the migration file, recorded in the history table.")
    duration_ms: int = Field(description="How long the migration's statements took, in milliseconds.")
    transactional: bool = Field(default=True, description="Whether it ran inside a transaction.")
    statements: StatementCount | None = Field(
        default=None,
        description="How many of its statements are applied; a file run outside a transaction runs statement "
        "by statement, and one that failed part-way resumes at the statement that did not finish.",
    )


class CheckResult(ApiModel):
    """The outcome of one verification item (a custom check, an expectation, or the row-loss rule)."""

    name: str = Field(description="The check's name, or the expected object it is about.")
    passed: bool = Field(description="Whether it held.")
    expected: str | None = Field(default=None, description="What was expected, e.g. '>= 1' or 'present'.")
    actual: str | None = Field(default=None, description="What the database returned.")
    message: str | None = Field(default=None, description="Why it failed, in words.")


class Verification(ApiModel):
    """Everything checked before COMMIT, and whether it all held."""

    passed: bool = Field(description="Whether every check held (the run commits only then).")
    checks: list[CheckResult] = Field(default_factory=list, description="Every check, passed or not.")


class RollbackResult(ApiModel):
    """What was tried when the run failed, and what came of it."""

    strategy: str = Field(description="transaction, down, restore or none.")
    outcome: RollbackOutcome = Field(description="NotNeeded, Succeeded or Failed.")
    message: str | None = Field(default=None, description="What was tried and what came of it.")
    version_after: str | None = Field(default=None, description="The database's schema version afterwards.")


class Blocker(ApiModel):
    """A session that held a lock the run waited for (pg_blocking_pids), as it was when the wait timed out."""

    pid: int = Field(description="The blocking session's process id.")
    user: str | None = Field(default=None, description="The role it is logged in as.")
    application_name: str | None = Field(default=None, description="Its application_name.")
    state: str | None = Field(default=None, description="active, idle in transaction, ...")
    transaction_seconds: float | None = Field(
        default=None, description="How long its transaction had been open."
    )
    query: str | None = Field(
        default=None,
        description="Its (last) statement with every literal masked ($1, $2, ...); masked wholesale when it "
        "does not parse.",
    )


class WaitedFor(ApiModel):
    """The backups and restores of the database a migration waited for before it took any lock."""

    runs: list[str] = Field(description="What was announced, e.g. 'backup 20261207T013000Z-3f9a'.")
    seconds: float = Field(description="How long the migration waited for them.")


class LockRetry(ApiModel):
    """A lock_timeout that a run waited out and retried."""

    phase: str = Field(description="What the run was doing, e.g. 'counting rows before the run'.")
    attempt: int = Field(description="Which attempt timed out (1 is the first).")
    delay_seconds: float = Field(description="How long the run waited before the next attempt.")
    blocked_by: list[Blocker] = Field(
        default_factory=list,
        description="The sessions that held the lock, seen while the attempt waited (empty when the wait "
        "ended before it could be seen).",
    )
    gave_up: bool = Field(
        default=False, description="The last attempt: the run gave up waiting and failed (no delay follows)."
    )


class BackupInfo(ApiModel):
    """A backup taken (or used) by the operation."""

    id: str = Field(description="The backup's id: a sortable UTC timestamp with a random suffix.")
    location: str = Field(description="Where the backup lives: s3://bucket/prefix/id or a path.")
    size_bytes: int | None = Field(default=None, description="Size of the stored (compressed) dump.")
    sha256: str | None = Field(
        default=None, description="SHA-256 of the stored dump, checked before any restore."
    )
    verified: bool | None = Field(default=None, description="Whether a test restore matched the backup.")


class ErrorInfo(ApiModel):
    message: str = Field(description="What went wrong; never contains a password.")
    migration: str | None = Field(default=None, description="The migration (version) that failed, if any.")
    statement: str | None = Field(default=None, description="The start of the failing statement.")
    line: int | None = Field(default=None, description="Line of the failing statement in its file.")


class Difference(ApiModel):
    """One schema difference: what kind of object, which one, and how it differs."""

    kind: str = Field(
        description="table, column, index, constraint, view, function, sequence, trigger, schema"
    )
    object: str = Field(description="Qualified name, e.g. public.orders.total")
    detail: str = Field(description="e.g. 'only in A', 'type integer -> bigint'")


class Drift(ApiModel):
    """Whether the live schema differs from the fingerprint recorded after the previous run."""

    detected: bool = Field(description="Whether the schema changed outside pgwarden since its last run.")
    differences: list[Difference] = Field(default_factory=list, description="What changed, object by object.")


# -- the rehearsal of a run on a scratch copy (`migrate --rehearse-from`, a DatabaseMigration's rehearsal)


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
    warnings: list[str] = Field(
        default_factory=list,
        description="What the approver should know, e.g. that no restore drill had verified the backup used.",
    )
    error: ErrorInfo | None = Field(default=None, description="Why the rehearsal failed.")


class RecoveryState(StrEnum):
    CLEAN = "Clean"
    RECOVERED = "Recovered"
    PARTIAL = "Partial"
    FAILED = "Failed"


class Recovered(ApiModel):
    """What a command found that a dead run had left on its database, and what it did about it. Absent from a
    command's report when nothing was found; `pgwarden recover` always reports it (state Clean then)."""

    found: list[str] = Field(default_factory=list, description="What dead runs left, one line each.")
    done: list[str] = Field(default_factory=list, description="What was done about it, one line each.")
    state: RecoveryState = Field(
        description="Clean (nothing was left), Recovered (all of it settled: the database is as before the dead "
        "run or as it meant to leave it), Partial (work of a dead run stays that no recorded rollback can undo; "
        "the next migrate continues it) or Failed (something could not be settled; the lines say what to do)."
    )


class RecoveryStatus(ApiModel):
    """On a resource whose Job died without a report: the one recovery Job the operator ran for it, and what it
    found and did (the `recovered` block of its report)."""

    job: str = Field(description="The recovery Job (`pgwarden job recover`); one per Job that died.")
    state: RecoveryState | None = Field(default=None, description="Unset while it runs; then as `recovered`.")
    found: list[str] = Field(default_factory=list, description="What the dead Job had left.")
    done: list[str] = Field(default_factory=list, description="What the recovery did about it.")


class RecoveryReport(ApiModel):
    """The report of `pgwarden recover` (and of a recovery Job)."""

    outcome: Outcome = Field(description="Succeeded when the database is settled (Clean or Recovered).")
    database: str | None = Field(default=None, description="user@host:port/dbname, never the password.")
    recovered: Recovered = Field(description="What was found and what was done.")
    current_version: str | None = Field(default=None, description="The schema version afterwards.")
    error: ErrorInfo | None = Field(default=None, description="Why it could not settle everything.")
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None


class MigrationReport(ApiModel):
    """The report of one `pgwarden migrate` run."""

    outcome: Outcome = Field(
        description="Succeeded, Failed (the database may differ) or RolledBack (it is as before)."
    )
    database: str | None = Field(default=None, description="user@host:port/dbname, never the password.")
    plan_only: bool | None = Field(default=None, description="True when only the plan was computed (--plan).")
    current_version: str | None = Field(
        default=None, description="The database's schema version after the run."
    )
    tables: BeforeAfter = Field(default_factory=BeforeAfter, description="User tables before and after.")
    rows: BeforeAfter = Field(
        default_factory=BeforeAfter, description="Rows in all user tables before and after."
    )
    row_counts: str | None = Field(default=None, description="exact, estimate or none")
    row_changes: list[RowChange] = Field(default_factory=list, description="Tables whose row counts changed.")
    applied: list[AppliedMigration] = Field(
        default_factory=list, description="Migrations this run applied and kept."
    )
    pending: list[str] = Field(default_factory=list, description="Versions still to apply after the run.")
    baselined: list[str] = Field(
        default_factory=list, description="Versions recorded as applied by --baseline."
    )
    plan: list[str] = Field(default_factory=list, description="The plan, as lines a person reads.")
    warnings: list[str] = Field(
        default_factory=list, description="Things worth knowing that did not stop the run."
    )
    verification: Verification | None = Field(default=None, description="What was checked before COMMIT.")
    rollback: RollbackResult | None = Field(default=None, description="Present when the run failed.")
    backup: BackupInfo | None = Field(
        default=None, description="The pre-migration backup, when one was taken."
    )
    drift: Drift | None = Field(default=None, description="Changes made by hand since the previous run.")
    lint: list[LintFinding] = Field(
        default_factory=list, description="Lock-risk findings (squawk) on the migrations this run applies."
    )
    rehearsal: Rehearsal | None = Field(
        default=None,
        description="The run rehearsed first on a copy restored from a backup (--rehearse-from).",
    )
    waited_for: WaitedFor | None = Field(
        default=None,
        description="The backups or restores of the database the run waited for before it started, so that "
        "its DDL never queued behind them.",
    )
    lock_retries: list[LockRetry] = Field(
        default_factory=list,
        description="Lock timeouts the run waited out and retried, with the backoff and the sessions that held "
        "the lock; the last one when the run gave up.",
    )
    recovered: Recovered | None = Field(
        default=None, description="What a dead run had left on the database, settled before this run."
    )
    error: ErrorInfo | None = Field(default=None, description="Why the run failed.")
    started_at: str | None = Field(default=None, description="When the run started (UTC, ISO 8601).")
    completed_at: str | None = Field(default=None, description="When the run ended (UTC, ISO 8601).")
    duration_seconds: float | None = Field(default=None, description="How long the run took.")

    def to_json_dict(self) -> dict[str, object]:
        """As every report, except that `currentVersion` is always there: null says "none, or unknown"."""
        data = super().to_json_dict()
        if not self.plan_only:
            data.setdefault("currentVersion", None)
        return data


class RestoreOnly(ApiModel):
    """The part of a backup to restore: whole schemas, and tables (`table` or `schema.table`, as in SQL:
    unquoted names fold to lower case, "Quoted" ones are kept as written)."""

    schemas: list[str] = Field(default_factory=list, max_length=64, description="Schemas restored whole.")
    tables: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Tables restored with their indexes, constraints, triggers, owned sequences and data.",
    )


class RowDifference(ApiModel):
    """A table whose restored row count differs from the backup's (or that is missing on one side)."""

    table: str
    expected: int | None = Field(default=None, description="Rows in the backup (manifest).")
    actual: int | None = Field(default=None, description="Rows after the restore.")
    detail: str


class RestoreComparison(ApiModel):
    """Whether the restored database holds exactly the tables and rows the backup recorded."""

    matches_backup: bool
    schema_matches: bool | None = Field(
        default=None, description="The restored schema's fingerprint equals the backup's (when recorded)."
    )
    tables_compared: int = 0
    row_counts: str | None = Field(
        default=None, description="exact, estimate or none: how the restored rows were counted and compared."
    )
    differences: list[RowDifference] = Field(default_factory=list)
    differences_total: int = 0

    def mismatch(self) -> str:
        """What differs, in a sentence."""
        parts = []
        if self.differences_total:
            parts.append(f"row counts differ in {self.differences_total} table(s)")
        if self.schema_matches is False:
            parts.append("the schema fingerprint differs")
        return " and ".join(parts) or "nothing"


class RestoredTable(ApiModel):
    """One table a partial restore brought back: under which name, and its rows against the backup's."""

    table: str = Field(description="The table as restored (with the rename suffix, if one was given).")
    backup_table: str = Field(description="The table in the backup.")
    expected: int | None = Field(default=None, description="Rows in the backup (manifest).")
    actual: int | None = Field(default=None, description="Rows restored.")
    matches: bool = Field(description="The restored rows equal the backup's.")


class RestoreReport(ApiModel):
    """The report of one `pgwarden restore` run."""

    outcome: Outcome
    database: str | None = None
    restored_from: str | None = Field(default=None, description="The backup's location.")
    backup: BackupInfo | None = None
    created_database: bool | None = None
    terminated_connections: int | None = None
    tables: int | None = None
    rows: int | None = None
    verification: RestoreComparison | None = None
    only: RestoreOnly | None = Field(default=None, description="What a partial restore was asked to restore.")
    rename_suffix: str | None = Field(default=None, description="Appended to the names of what was restored.")
    restored_tables: list[RestoredTable] = Field(
        default_factory=list, description="A partial restore's tables, their rows against the backup's."
    )
    left_out: list[str] = Field(
        default_factory=list,
        description="What a partial restore did not bring although it belongs to a restored table (a foreign "
        "key to a table not restored).",
    )
    error: ErrorInfo | None = None
    pg_restore_version: str | None = None
    recovered: Recovered | None = Field(
        default=None, description="What a dead run had left on the database, settled before this restore."
    )
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None


class BackupReport(ApiModel):
    """The report of one `pgwarden backup` run."""

    outcome: Outcome
    database: str | None = Field(default=None, description="user@host:port/dbname, never the password.")
    backup: BackupInfo | None = None
    format: str | None = None
    compression: str | None = None
    tables: int | None = None
    rows: int | None = None
    server_version: str | None = None
    pg_dump_version: str | None = None
    verification: RestoreComparison | None = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    throughput_bytes_per_second: float | None = Field(
        default=None, description="Uncompressed dump bytes per second of dumping."
    )
    encryption: Sealing | None = Field(
        default=None, description="How the stored dump was sealed (age, recipients' public keys); unset: not."
    )
    copies: list[BackupCopy] | None = Field(
        default=None, description="Further copies of the backup (--copy-to), each verified by checksum there."
    )
    recovered: Recovered | None = Field(
        default=None, description="What a dead run had left on the database, settled before this backup."
    )
