"""The resource API's choices and defaults in plain Python, without pydantic.

The command line's flags offer them, and its parser is built by `pgwarden --help` and `--version` too: kept
apart from the models, they cost that parser nothing to load (issue 22). The models import them from here."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

# How long pg_dump (and the row counts at its snapshot) wait for a table lock another session holds:
# long enough to ride out a short DDL, short enough that a backup never hangs behind one for ever.
DEFAULT_LOCK_WAIT_TIMEOUT = "1m"

# How long an incomplete backup's files are left alone before a prune calls them debris.
DEFAULT_DEBRIS_GRACE = timedelta(hours=24)

RestoreRowCounts = Literal["exact", "estimate", "none"]
"""How a restore counts the rows it restored (the `verify.rowCounts` of a DatabaseRestore, `restore --row-counts`)."""


class BackupFormat(StrEnum):
    """pg_dump's output format."""

    CUSTOM = "custom"
    DIRECTORY = "directory"


class RollbackStrategy(StrEnum):
    """What to do when a run fails."""

    TRANSACTION = "transaction"
    DOWN = "down"
    RESTORE = "restore"
    NONE = "none"


class JobKind(StrEnum):
    """What a Job does; also the argument of `pgwarden job`."""

    MIGRATE = "migrate"
    BACKUP = "backup"
    RESTORE = "restore"
    DRILL = "drill"  # a DatabaseBackup's restore drill (verify.schedule)
    DRIFT = "drift"  # a DatabaseMigrationSet's read-only drift check of its targets (spec.drift)
    RECOVER = "recover"  # settle what a migration or restore Job that died without a report left
