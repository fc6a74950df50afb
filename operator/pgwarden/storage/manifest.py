"""Backup manifests and the catalog they form: a backup exists exactly when its manifest.json does.

Layout under a storage prefix: `<id>/<dump file>` then, written last, `<id>/manifest.json`. Anything in an
`<id>/` folder without a manifest (or an upload never completed) is debris of an incomplete backup.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import Field, ValidationError

from pgwarden.api.base import ApiModel
from pgwarden.storage.base import ObjectNotFound, PendingWrite, Storage, StorageError
from pgwarden.storage.retention import BackupRecord, DebrisRecord, PrunePlan, RetentionPolicy, plan_prune

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# A UTC timestamp (so ids sort by time) and a random suffix (so two backups in one second differ).
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class BackupManifest(ApiModel):
    """Everything known about one complete backup; written after the dump, so its presence means complete."""

    manifest_version: int = MANIFEST_VERSION
    id: str
    format: str = Field(description="custom or directory (a tar of pg_dump's directory format)")
    compression: str = Field(description="zstd:3, lz4, gzip:6 or none: pgwarden's, around a -Z0 dump")
    dump_file: str = Field(description="The dump's object name inside the backup folder.")
    size_bytes: int
    sha256: str
    database: str = Field(description="user@host:port/dbname, never the password.")
    server_version: str
    pg_dump_version: str
    tables: int
    rows: int
    per_table: dict[str, int] = Field(default_factory=dict, description="Exact rows per table in the dump.")
    schema_fingerprint: str | None = None
    started_at: datetime
    completed_at: datetime
    duration_seconds: float
    dump_seconds: float | None = None
    verified: bool = False
    verified_at: datetime | None = None
    pgwarden_version: str | None = None
    selection: dict[str, list[str]] | None = Field(
        default=None, description="pg_dump patterns the dump was limited to (schemas, tables, excludes)."
    )


def write_manifest(backup: Storage, manifest: BackupManifest) -> None:
    """Write the manifest of a backup whose dump is already stored (this is what makes it exist)."""
    backup.put_bytes(MANIFEST, json.dumps(manifest.to_json_dict(), indent=2).encode() + b"\n")


def read_manifest(backup: Storage) -> BackupManifest:
    """The manifest of the backup rooted at `backup`; ObjectNotFound when it has none."""
    data = backup.get_bytes(MANIFEST)
    try:
        return BackupManifest.model_validate_json(data)
    except ValidationError as exc:
        raise StorageError(
            f"{backup.uri(MANIFEST)} is not a valid manifest: {exc.errors()[0]['msg']}"
        ) from None


@dataclass
class Debris:
    """What one incomplete backup left: objects without a manifest and uploads never completed."""

    name: str
    keys: list[str]
    pending: list[PendingWrite]
    last_activity: datetime


@dataclass
class Catalog:
    """The complete backups under a prefix (newest first) and the debris of incomplete ones."""

    backups: list[BackupManifest]
    debris: list[Debris]
    keys: dict[str, list[str]]
    unreadable: list[str] = field(default_factory=list)


def scan(storage: Storage) -> Catalog:
    """Read the catalog under a prefix. Only `<id>/` folders with pgwarden's id pattern are considered,
    so nothing else stored under the prefix is ever taken for debris."""
    keys: dict[str, list[str]] = {}
    activity: dict[str, datetime] = {}
    for obj in storage.list_objects():
        backup_id, _, rest = obj.key.partition("/")
        if not rest or not BACKUP_ID.match(backup_id):
            continue
        keys.setdefault(backup_id, []).append(obj.key)
        activity[backup_id] = max(activity.get(backup_id, obj.modified), obj.modified)
    pending: dict[str, list[PendingWrite]] = {}
    for write in storage.list_pending():
        backup_id = write.key.partition("/")[0]
        if BACKUP_ID.match(backup_id):
            pending.setdefault(backup_id, []).append(write)
            activity[backup_id] = max(activity.get(backup_id, write.last_activity), write.last_activity)
    backups, debris, unreadable = [], [], []
    for backup_id in sorted(set(keys) | set(pending)):
        stored = keys.get(backup_id, [])
        if f"{backup_id}/{MANIFEST}" in stored:
            try:
                backups.append(read_manifest(storage.child(backup_id)))
            except (StorageError, ValueError):
                unreadable.append(backup_id)
                continue
            if backup_id in pending:  # a stray upload inside a complete backup is debris of its own
                debris.append(Debris(backup_id, [], pending[backup_id], activity[backup_id]))
        else:
            debris.append(Debris(backup_id, stored, pending.get(backup_id, []), activity[backup_id]))
    backups.sort(key=lambda m: (m.completed_at, m.id), reverse=True)
    return Catalog(backups, debris, keys, unreadable)


def list_backups(storage: Storage) -> list[BackupManifest]:
    """The complete backups under a prefix, newest first."""
    return scan(storage).backups


def locate_backup(storage: Storage, backup_id: str | None = None) -> tuple[Storage, BackupManifest]:
    """The backup at `storage` itself (a backup folder), or `backup_id` ('latest' or None: the newest
    complete one) under it as a prefix."""
    if backup_id in (None, "latest") and storage.exists(MANIFEST):
        return storage, read_manifest(storage)
    if backup_id not in (None, "latest"):
        backup = storage.child(str(backup_id))
        try:
            return backup, read_manifest(backup)
        except ObjectNotFound:
            raise ObjectNotFound(f"no complete backup {backup_id} under {storage.location}") from None
    backups = list_backups(storage)
    if not backups:
        raise ObjectNotFound(f"no complete backup at {storage.location} (no manifest.json there or below)")
    return storage.child(backups[0].id), backups[0]


@dataclass(frozen=True)
class PruneResult:
    plan: PrunePlan
    deleted: list[str]
    debris_removed: list[str]


def prune(storage: Storage, policy: RetentionPolicy, now: datetime, *, dry_run: bool = False) -> PruneResult:
    """Apply retention under a prefix: delete the backups and debris `plan_prune` gives up.

    A backup's manifest is deleted first, so an interrupted prune leaves debris, never a listed backup
    whose dump is gone."""
    catalog = scan(storage)
    records = [BackupRecord(m.id, m.completed_at, m.verified) for m in catalog.backups]
    debris_records = [DebrisRecord(d.name, d.last_activity) for d in catalog.debris]
    plan = plan_prune(records, debris_records, policy, now)
    deleted, removed = [], []
    if not dry_run:
        for decision in plan.delete:
            stored = catalog.keys.get(decision.id, [])
            manifest_key = f"{decision.id}/{MANIFEST}"
            storage.delete([manifest_key])
            storage.delete([key for key in stored if key != manifest_key])
            deleted.append(decision.id)
        by_name = {d.name: d for d in catalog.debris}
        for record in plan.delete_debris:
            item = by_name[record.name]
            for write in item.pending:
                storage.discard_pending(write)
            storage.delete(item.keys)
            removed.append(record.name)
    return PruneResult(plan, deleted, removed)


class BackupSummary(ApiModel):
    """One complete backup in a listing."""

    id: str
    location: str
    size_bytes: int
    sha256: str
    format: str
    compression: str
    tables: int
    rows: int
    server_version: str
    completed_at: datetime
    verified: bool


class BackupListReport(ApiModel):
    """The report of `pgwarden backups`: complete backups, newest first."""

    outcome: str = "Succeeded"
    location: str
    count: int
    backups: list[BackupSummary] = Field(default_factory=list)
    incomplete: int = Field(default=0, description="Folders or uploads of backups that never completed.")
    unreadable: list[str] = Field(default_factory=list, description="Backups whose manifest is invalid.")


class PrunedItem(ApiModel):
    id: str
    reason: str


class PruneReport(ApiModel):
    """The report of `pgwarden prune`: what was kept, deleted, and cleaned up, and why."""

    outcome: str = "Succeeded"
    location: str
    dry_run: bool = False
    kept: list[PrunedItem] = Field(default_factory=list)
    deleted: list[PrunedItem] = Field(default_factory=list)
    debris_removed: list[str] = Field(default_factory=list)
    debris_kept: list[str] = Field(default_factory=list, description="Younger than the grace period.")


def summarize(storage: Storage, manifest: BackupManifest) -> BackupSummary:
    return BackupSummary(
        id=manifest.id,
        location=storage.uri(manifest.id),
        size_bytes=manifest.size_bytes,
        sha256=manifest.sha256,
        format=manifest.format,
        compression=manifest.compression,
        tables=manifest.tables,
        rows=manifest.rows,
        server_version=manifest.server_version,
        completed_at=manifest.completed_at,
        verified=manifest.verified,
    )


def list_report(storage: Storage) -> BackupListReport:
    catalog = scan(storage)
    return BackupListReport(
        location=storage.location,
        count=len(catalog.backups),
        backups=[summarize(storage, m) for m in catalog.backups],
        incomplete=len(catalog.debris),
        unreadable=catalog.unreadable,
    )


def prune_report(storage: Storage, result: PruneResult, *, dry_run: bool) -> PruneReport:
    return PruneReport(
        location=storage.location,
        dry_run=dry_run,
        kept=[PrunedItem(id=d.id, reason=d.reason) for d in result.plan.keep],
        deleted=[PrunedItem(id=d.id, reason=d.reason) for d in result.plan.delete],
        debris_removed=[d.name for d in result.plan.delete_debris],
        debris_kept=[d.name for d in result.plan.keep_debris],
    )
