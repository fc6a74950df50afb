"""The reports of `pgwarden backups` and `pgwarden prune`: what is stored under a prefix, and whose it is."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pgwarden.api.backup import RetentionDecision
from pgwarden.api.base import ApiModel
from pgwarden.api.encryption import Sealing
from pgwarden.storage.base import Storage
from pgwarden.storage.manifest import BackupManifest, PruneResult, scan
from pgwarden.storage.ownership import group_by_owner, owner_of
from pgwarden.storage.retention import Decision


class BackupSummary(ApiModel):
    """One complete backup in a listing."""

    id: str
    location: str
    owner: str = Field(description="The owning resource or label, else the database as host:port/dbname.")
    owner_recorded: bool = Field(
        description="False for a backup from before owners were recorded: its owner is derived from its database."
    )
    database: str = Field(description="user@host:port/dbname, never the password.")
    size_bytes: int
    sha256: str
    format: str
    compression: str
    tables: int
    rows: int
    server_version: str
    completed_at: datetime
    verified: bool
    encryption: Sealing | None = Field(
        default=None,
        description="How the dump is sealed (restoring it needs an identity); unset: not sealed.",
    )


class OwnerSummary(ApiModel):
    """One owner's backups under the prefix."""

    owner: str
    count: int
    newest: str = Field(description="Id of the owner's newest complete backup.")


class BackupListReport(ApiModel):
    """The report of `pgwarden backups`: complete backups, newest first, and whose they are."""

    outcome: str = "Succeeded"
    location: str
    owner: str | None = Field(default=None, description="Only this owner's backups are listed.")
    count: int
    owners: list[OwnerSummary] = Field(default_factory=list, description="Every owner with backups here.")
    backups: list[BackupSummary] = Field(default_factory=list)
    incomplete: int = Field(default=0, description="Folders or uploads of backups that never completed.")
    unreadable: list[str] = Field(default_factory=list, description="Backups whose manifest is invalid.")
    folders: dict[str, int] = Field(
        default_factory=dict,
        description="Folders below holding backups of their own (a DatabaseBackup's <namespace>/<name>), by count.",
    )


class PrunedItem(RetentionDecision):
    """One backup a prune kept or deleted, whose it is, with the rules that kept it and why."""

    owner: str | None = None


class PruneReport(ApiModel):
    """The report of `pgwarden prune`: what was kept, deleted, and cleaned up, and why."""

    outcome: str = "Succeeded"
    location: str
    owner: str | None = Field(default=None, description="Retention acted on this owner's backups only.")
    dry_run: bool = False
    time_zone: str = Field(default="UTC", description="The calendar the daily to yearly rules counted on.")
    kept: list[PrunedItem] = Field(default_factory=list)
    deleted: list[PrunedItem] = Field(default_factory=list)
    debris_removed: list[str] = Field(default_factory=list)
    debris_kept: list[str] = Field(default_factory=list, description="Younger than the grace period.")


def summarize(storage: Storage, manifest: BackupManifest) -> BackupSummary:
    owner = owner_of(manifest)
    return BackupSummary(
        id=manifest.id,
        location=storage.uri(manifest.id),
        owner=owner.label,
        owner_recorded=owner.recorded,
        database=manifest.database,
        size_bytes=manifest.size_bytes,
        sha256=manifest.sha256,
        format=manifest.format,
        compression=manifest.compression,
        tables=manifest.tables,
        rows=manifest.rows,
        server_version=manifest.server_version,
        completed_at=manifest.completed_at,
        verified=manifest.verified,
        encryption=manifest.encryption,
    )


def list_report(storage: Storage, *, owner: str | None = None) -> BackupListReport:
    """Every complete backup under the prefix (or `owner`'s only), with a summary per owner."""
    catalog = scan(storage)
    groups = group_by_owner(catalog.backups)
    shown = catalog.backups if owner is None else groups.get(owner, [])
    return BackupListReport(
        location=storage.location,
        owner=owner,
        count=len(shown),
        owners=[
            OwnerSummary(owner=label, count=len(items), newest=items[0].id)
            for label, items in sorted(groups.items())
        ],
        backups=[summarize(storage, m) for m in shown],
        incomplete=len(catalog.debris),
        unreadable=catalog.unreadable,
        folders=catalog.nested,
    )


def pruned_item(decision: Decision, owner: str | None) -> PrunedItem:
    return PrunedItem(id=decision.id, owner=owner, rules=list(decision.rules), reason=decision.reason)


def prune_report(
    storage: Storage, result: PruneResult, *, dry_run: bool, time_zone: str = "UTC"
) -> PruneReport:
    return PruneReport(
        location=storage.location,
        owner=result.owner,
        dry_run=dry_run,
        time_zone=time_zone,
        kept=[pruned_item(d, result.owners.get(d.id)) for d in result.plan.keep],
        deleted=[pruned_item(d, result.owners.get(d.id)) for d in result.plan.delete],
        debris_removed=[d.name for d in result.plan.delete_debris],
        debris_kept=[d.name for d in result.plan.keep_debris],
    )
