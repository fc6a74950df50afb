"""The pre-migration backup (`migrate --backup-to`) and its restore (`--rollback restore`)."""

from __future__ import annotations

from collections.abc import Callable

from pgwarden.api.reports import BackupInfo
from pgwarden.engine.errors import BadInput


def backup_hooks(url: str, location: str) -> tuple[Callable[[], BackupInfo], Callable[[BackupInfo], None]]:
    """Functions that take the backup before the run and restore it when the run fails."""
    raise BadInput("--backup-to is not available yet in this build")
