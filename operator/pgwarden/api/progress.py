"""Progress of a long migration statement as one machine-readable log line, and its place in status.

The Job cannot write status (its Pod has no ServiceAccount token), so it prints `pgwarden-progress {json}`
on stderr; the operator reads the tail of the Pod's log and shows the last such line as `status.progress`.
Both sides use this module, so the line's shape is written down once.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import Field, ValidationError

from pgwarden.api.base import ApiModel

PREFIX = "pgwarden-progress "
STATEMENT_LIMIT = 200


class MigrationProgress(ApiModel):
    """Which migration statement has been running for a while and, for an index build, how far it got."""

    version: str = Field(description="The version of the migration running.")
    script: str = Field(description="Its file.")
    line: int = Field(description="The line of the statement in that file.")
    statement: str = Field(description="The start of the statement (truncated).")
    elapsed_seconds: float = Field(description="How long the statement had run when this was observed.")
    phase: str | None = Field(
        default=None, description="The index build's phase (pg_stat_progress_create_index), if it is one."
    )
    table: str | None = Field(default=None, description="The table the index is built on.")
    blocks_done: int | None = Field(default=None, description="Blocks of the current phase done.")
    blocks_total: int | None = Field(default=None, description="Blocks of the current phase in all.")
    tuples_done: int | None = Field(default=None, description="Tuples of the current phase done.")
    tuples_total: int | None = Field(default=None, description="Tuples of the current phase in all.")
    observed_at: datetime = Field(description="When the Job observed this.")


def progress_line(progress: MigrationProgress) -> str:
    """The log line for one progress report (pure); the statement is cut to STATEMENT_LIMIT characters."""
    statement = progress.statement
    if len(statement) > STATEMENT_LIMIT:
        statement = statement[: STATEMENT_LIMIT - 3] + "..."
    shown = progress.model_copy(
        update={"statement": statement, "elapsed_seconds": round(progress.elapsed_seconds, 1)}
    )
    return PREFIX + json.dumps(shown.to_json_dict(), separators=(",", ":"))


def parse_line(line: str) -> MigrationProgress | None:
    """The progress a log line carries, or None for any other line (or a damaged one)."""
    if not line.startswith(PREFIX):
        return None
    try:
        return MigrationProgress.model_validate_json(line[len(PREFIX) :].strip())
    except ValidationError:
        return None


def last_progress(log: str) -> MigrationProgress | None:
    """The newest progress line in a log tail, if any."""
    for line in reversed(log.splitlines()):
        found = parse_line(line)
        if found is not None:
            return found
    return None
