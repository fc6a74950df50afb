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
        default="5s", description="PostgreSQL lock_timeout for each statement; lock timeouts are retried."
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
