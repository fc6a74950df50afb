"""The pre-migration backup and the restore that undoes a run from it (placeholder until the safe swap lands)."""

from __future__ import annotations

from collections.abc import Callable

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import BackupInfo, Outcome, RollbackOutcome, RollbackResult
from pgwarden.engine.backup import take_backup
from pgwarden.engine.connect import database_name
from pgwarden.engine.errors import PgwardenError
from pgwarden.engine.restore import drop_database, restore_backup


class BackupSafetyNet:
    """Takes the backup before the run and puts it back when the run fails."""

    def __init__(self, url: str, location: str, progress: Callable[[str], None] | None = None) -> None:
        self.url, self.location, self.progress = url, location, progress

    def preflight(self, strategy: RollbackStrategy) -> None:
        """Nothing checked yet."""

    def take(self) -> BackupInfo:
        report = take_backup(self.url, self.location, progress=self.progress)
        if report.outcome != Outcome.SUCCEEDED or report.backup is None:
            message = report.error.message if report.error else "no backup was written"
            raise PgwardenError(f"the pre-migration backup failed, nothing was migrated: {message}")
        return report.backup

    def restore(self, backup: BackupInfo, say: Callable[[str], None]) -> RollbackResult:
        try:
            drop_database(self.url, database_name(self.url))
            report = restore_backup(self.url, self.location, backup_id=backup.id, create=True, progress=say)
        except PgwardenError as exc:
            return RollbackResult(strategy="restore", outcome=RollbackOutcome.FAILED, message=str(exc))
        if report.outcome != Outcome.SUCCEEDED:
            message = report.error.message if report.error else "the restore did not match the backup"
            return RollbackResult(strategy="restore", outcome=RollbackOutcome.FAILED, message=message)
        return RollbackResult(
            strategy="restore", outcome=RollbackOutcome.SUCCEEDED, message=f"restored backup {backup.id}"
        )
