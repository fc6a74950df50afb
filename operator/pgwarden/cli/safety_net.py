"""The pre-migration backup (`migrate --backup-to`) and its restore (`--rollback restore`)."""

from __future__ import annotations

from collections.abc import Callable

from pgwarden.api.reports import BackupInfo, Outcome
from pgwarden.cli.output import progress
from pgwarden.engine.backup import take_backup
from pgwarden.engine.connect import database_name
from pgwarden.engine.errors import PgwardenError
from pgwarden.engine.restore import drop_database, restore_backup


def backup_hooks(url: str, location: str) -> tuple[Callable[[], BackupInfo], Callable[[BackupInfo], None]]:
    """Functions that take the backup before the run and put it back when the run fails."""

    def before() -> BackupInfo:
        report = take_backup(url, location, progress=progress)
        if report.outcome != Outcome.SUCCEEDED or report.backup is None:
            message = report.error.message if report.error else "no backup was written"
            raise PgwardenError(f"the pre-migration backup failed, nothing was migrated: {message}")
        return report.backup

    def undo(backup: BackupInfo) -> None:
        # Objects the run created are not in the dump, so the database is recreated rather than cleaned.
        drop_database(url, database_name(url))
        report = restore_backup(url, location, backup_id=backup.id, create=True, progress=progress)
        if report.outcome != Outcome.SUCCEEDED:
            raise PgwardenError(
                report.error.message if report.error else "the restore did not match the backup"
            )

    return before, undo
