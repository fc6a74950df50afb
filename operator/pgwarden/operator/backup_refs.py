"""A backupRef (a DatabaseRestore's source, a migration's spec.rehearsal) read against its DatabaseBackup. Pure.

Both read it the same way: only the DatabaseBackup's own backups (its folder, its owner label; a copy keeps
both), from its storage or the copy named, the backup named or its newest complete one. Each caller says in
its own words why a reference cannot be resolved yet.
"""

from __future__ import annotations

from enum import StrEnum

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.restore import BackupRef
from pgwarden.api.task import RestoreSource, backup_scope


class Unresolved(StrEnum):
    """Why a backupRef names no backup yet (the reason its resource shows)."""

    BACKUP_NOT_FOUND = "BackupNotFound"
    COPY_NOT_FOUND = "CopyNotFound"
    WAITING_FOR_BACKUP = "WaitingForBackup"


def resolve(ref: BackupRef, referenced: DatabaseBackup | None, namespace: str) -> RestoreSource | Unresolved:
    """The storage, scope and backup `ref` names; `referenced` is its DatabaseBackup (None if absent) and
    `namespace` the referring resource's."""
    if referenced is None:
        return Unresolved.BACKUP_NOT_FOUND
    scope = backup_scope(referenced.metadata.namespace or namespace, ref.name)
    storage = referenced.spec.storage
    if ref.copy_index is not None:
        if ref.copy_index >= len(referenced.spec.copies):
            return Unresolved.COPY_NOT_FOUND
        storage = referenced.spec.copies[ref.copy_index].storage
    if ref.id != "latest":
        return RestoreSource(storage=storage, backup_id=ref.id, scope=scope)
    last = referenced.status.last_backup if referenced.status else None
    if last is None:
        return Unresolved.WAITING_FOR_BACKUP
    return RestoreSource(storage=storage, scope=scope, last_known_id=last.id)
