"""How a migration run is applied and undone: transaction mode, safety limits, rollback strategy."""

from enum import StrEnum

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.choices import RollbackStrategy as RollbackStrategy
from pgwarden.api.durations import Duration
from pgwarden.api.lint import LintPolicy


class TransactionMode(StrEnum):
    """How pending migrations are grouped into transactions."""

    AUTO = "auto"
    ALL = "all"
    PER_MIGRATION = "perMigration"


class MigrationPolicy(ApiModel):
    """Safety settings of a migration run."""

    transaction: TransactionMode = Field(
        default=TransactionMode.AUTO,
        description=(
            "auto: the whole run in one transaction, split only around statements that cannot run in one; "
            "all: one transaction, refusing such statements; perMigration: commit each migration on its own."
        ),
    )
    allow_destructive: bool = Field(
        default=False,
        description="Allow DROP TABLE/COLUMN/SCHEMA, TRUNCATE, unqualified DELETE/UPDATE and column type changes.",
    )
    lock_timeout: Duration = Field(
        default="5s",
        description="PostgreSQL lock_timeout for every lock wait of the run (counts, history, data changes); "
        "lock timeouts are retried.",
    )
    ddl_lock_timeout: Duration = Field(
        default="500ms",
        description=(
            "lock_timeout of each statement that takes a lock stronger than ROW EXCLUSIVE (DDL, DO blocks): "
            "the longest a reader or writer queued behind it waits per attempt. Not for CONCURRENTLY "
            "statements, which wait for older transactions by design."
        ),
    )
    lock_attempts: int = Field(
        default=10,
        ge=1,
        le=100,
        description="How many times a step that timed out waiting for a lock is tried in all.",
    )
    lock_retry_within: Duration = Field(
        default="20s",
        description=(
            "The time the pauses between attempts add up to at most: shared out evenly and jittered, so "
            "retries spread over it and the table is free between two short lock waits."
        ),
    )
    backup_wait: Duration = Field(
        default="1h",
        description=(
            "How long the run waits, before it takes any lock, for a backup or restore of the database that is "
            "under way (announced by pgwarden), so its DDL never queues behind a dump; past it the run fails "
            "without changing anything."
        ),
    )
    statement_timeout: Duration = Field(
        default="1h",
        description=(
            "PostgreSQL statement_timeout for every statement of the run (migrations, counts, checks); "
            "always bounded, so a hung statement cannot hold a run, or a schedule behind it, for ever."
        ),
    )
    lint: LintPolicy = Field(
        default_factory=LintPolicy,
        description=(
            "Lock-risk lint of the pending files (squawk): every finding is listed in status.lint; the rules "
            "named in failOn refuse the run before anything changes."
        ),
    )
