"""Backup manifests and the catalog they form: a backup exists exactly when its manifest.json does.

Layout under a storage prefix: `<id>/<dump file>` then, written last, `<id>/manifest.json`. Anything in an
`<id>/` folder without a manifest (or an upload never completed) is debris of an incomplete backup.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import Field, ValidationError

from pgwarden.api.base import ApiModel
from pgwarden.api.encryption import Sealing
from pgwarden.api.reports import BackupInfo
from pgwarden.storage.base import ObjectNotFound, PendingWrite, Storage, StorageError
from pgwarden.storage.ownership import OwnerNotChosen, check_owner, choose_latest, group_by_owner, owner_of
from pgwarden.storage.retention import (
    BackupRecord,
    DebrisRecord,
    Decision,
    PrunePlan,
    RetentionPolicy,
    plan_prune,
)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# A UTC timestamp (so ids sort by time) and a random suffix (so two backups in one second differ).
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class StoredFile(ApiModel):
    """One object of a backup stored as several (pg_dump's directory format: one per table and the TOC)."""

    name: str = Field(
        description="pg_dump's file name (toc.dat, 4012.dat); stored as `<dump_file>/<name><suffix>`."
    )
    key: str = Field(description="The object's key inside the backup folder.")
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the stored object (after compression and encryption).")


def files_digest(files: list[StoredFile]) -> str:
    """One checksum over a backup stored as several objects: SHA-256 of `key size sha256` lines."""
    lines = "".join(f"{f.key} {f.size_bytes} {f.sha256}\n" for f in sorted(files, key=lambda f: f.key))
    return hashlib.sha256(lines.encode()).hexdigest()


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
    database_name: str | None = Field(
        default=None, description="The database dumped (unset in old manifests)."
    )
    database_server: str | None = Field(
        default=None,
        description="host:port of its server, a label without credentials (unset in old manifests).",
    )
    owner: str | None = Field(
        default=None,
        description="The resource that made the backup (DatabaseBackup/<namespace>/<name>) or the label given "
        "to `pgwarden backup --owner`; unset: the backup belongs to its database.",
    )
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
    verified_restore_seconds: float | None = Field(
        default=None, description="How long the restore that verified it took (a restore drill measures it)."
    )
    pgwarden_version: str | None = None
    selection: dict[str, list[str]] | None = Field(
        default=None, description="pg_dump patterns the dump was limited to (schemas, tables, excludes)."
    )
    encryption: Sealing | None = Field(
        default=None,
        description="How the stored dump was sealed (age, to these public keys); unset: not encrypted.",
    )
    files: list[StoredFile] | None = Field(
        default=None,
        description="Directory format: pg_dump's files stored one object each under `dump_file`/, checked one by "
        "one; `sha256` is then files_digest of them. Unset: one object (custom format, or an older tar).",
    )


def write_manifest(backup: Storage, manifest: BackupManifest) -> None:
    """Write the manifest of a backup whose dump is already stored (this is what makes it exist)."""
    backup.put_bytes(MANIFEST, json.dumps(manifest.to_json_dict(), indent=2).encode() + b"\n")


def backup_info(backup: Storage, manifest: BackupManifest) -> BackupInfo:
    """The stored backup as a report names it: its id, location, size, checksum and whether it was verified."""
    return BackupInfo(
        id=manifest.id,
        location=backup.uri(),
        size_bytes=manifest.size_bytes,
        sha256=manifest.sha256,
        verified=manifest.verified,
    )


def read_manifest(backup: Storage) -> BackupManifest:
    """The manifest of the backup rooted at `backup`; ObjectNotFound when it has none."""
    data = backup.get_bytes(MANIFEST)
    try:
        return BackupManifest.model_validate_json(data)
    except ValidationError as exc:
        raise StorageError(
            f"{backup.uri(MANIFEST)} is not a valid manifest: {exc.errors()[0]['msg']}"
        ) from exc


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
    # Deeper folders holding complete backups (a DatabaseBackup's <namespace>/<name>), by how many.
    nested: dict[str, int] = field(default_factory=dict)


def scan(storage: Storage) -> Catalog:
    """Read the catalog under a prefix. Only `<id>/` folders with pgwarden's id pattern are considered,
    so nothing else stored under the prefix is ever taken for debris."""
    keys: dict[str, list[str]] = {}
    activity: dict[str, datetime] = {}
    nested: dict[str, int] = {}
    for obj in storage.list_objects():
        backup_id, _, rest = obj.key.partition("/")
        if not rest or not BACKUP_ID.match(backup_id):
            folder, _, name = obj.key.rpartition("/")
            parent, _, inner_id = folder.rpartition("/")
            if name == MANIFEST and parent and BACKUP_ID.match(inner_id):
                nested[parent] = nested.get(parent, 0) + 1
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
    return Catalog(backups, debris, keys, unreadable, dict(sorted(nested.items())))


def list_backups(storage: Storage, *, owner: str | None = None) -> list[BackupManifest]:
    """The complete backups under a prefix, newest first; only `owner`'s when one is named."""
    backups = scan(storage).backups
    return backups if owner is None else [m for m in backups if owner_of(m).label == owner]


PICK_OWNER = "choose one with --owner OWNER (its newest backup) or --id ID"


def locate_backup(
    storage: Storage, backup_id: str | None = None, *, owner: str | None = None
) -> tuple[Storage, BackupManifest]:
    """The backup at `storage` itself (a backup folder), or `backup_id` under it as a prefix, or ('latest'
    or None) the newest complete backup of `owner` there, or of the only owner there when none is named.

    A prefix holding several owners' backups and no owner named raises OwnerNotChosen: an owner-blind
    'latest' could restore another database's dump. A named backup of another (recorded) owner than
    `owner` raises NotTheOwners."""
    if backup_id in (None, "latest") and storage.exists(MANIFEST):
        manifest = read_manifest(storage)
        check_owner(manifest, owner, storage.location)
        return storage, manifest
    if backup_id not in (None, "latest"):
        backup = storage.child(str(backup_id))
        try:
            manifest = read_manifest(backup)
        except ObjectNotFound as exc:
            raise ObjectNotFound(f"no complete backup {backup_id} under {storage.location}") from exc
        check_owner(manifest, owner, backup.location)
        return backup, manifest
    chosen = choose_latest(list_backups(storage), owner, storage.location, advice=PICK_OWNER)
    return storage.child(chosen.id), chosen


def prefer_verified(
    manifests: list[BackupManifest], owner: str | None, location: str
) -> tuple[BackupManifest, str | None]:
    """What a rehearsal restores from a prefix (manifests newest first): the owner's newest backup that a
    restore drill (or `backup --verify`) verified, else the owner's newest complete one and a warning that
    says it is unverified. The owner is picked as for `latest`."""
    newest = choose_latest(manifests, owner, location, advice=PICK_OWNER)
    label = owner_of(newest).label
    verified = [m for m in manifests if m.verified and owner_of(m).label == label]
    if verified:
        return verified[0], None
    return newest, (
        f"no backup of {label} at {location} was verified by a restore drill; rehearsed on the newest "
        f"complete one, {newest.id}, unverified (restore drills verify backups: `pgwarden verify-backup`, "
        "or a DatabaseBackup's spec.verify)"
    )


def locate_rehearsal_backup(
    storage: Storage, *, owner: str | None = None
) -> tuple[Storage, BackupManifest, str | None]:
    """The backup a rehearsal restores: a backup folder as it is; under a prefix, `prefer_verified`'s
    choice and its warning (None when it is verified)."""
    if storage.exists(MANIFEST):
        backup, manifest = locate_backup(storage, None, owner=owner)
        return backup, manifest, None
    manifest, warning = prefer_verified(list_backups(storage), owner, storage.location)
    return storage.child(manifest.id), manifest, warning


PRUNE_WHICH_OWNER = (
    "prune one owner's backups with --owner OWNER, or each owner's on its own with --all-owners"
)


def plan_by_owner(
    catalog: Catalog,
    policy: RetentionPolicy,
    now: datetime,
    *,
    owner: str | None,
    every_owner: bool,
    where: str,
) -> tuple[PrunePlan, dict[str, str]]:
    """Retention applied to one owner's backups (or each owner's on its own), and each decided id's owner.

    With neither an owner nor `every_owner`, a prefix holding several owners' backups is refused
    (OwnerNotChosen) before anything is decided: keep-last over two databases would delete the only
    backups of one of them. Debris, which has no manifest and so no owner, goes by its grace period."""
    groups = group_by_owner(catalog.backups)
    if owner is not None:
        if owner not in groups and groups:
            choose_latest(
                catalog.backups, owner, where, advice=PRUNE_WHICH_OWNER
            )  # raises, naming the owners
        groups = {owner: groups.get(owner, [])}
    elif not every_owner and len(groups) > 1:
        raise OwnerNotChosen(where, groups, PRUNE_WHICH_OWNER)
    keep: list[Decision] = []
    delete: list[Decision] = []
    owners: dict[str, str] = {}
    for label, manifests in sorted(groups.items()):
        records = [BackupRecord(m.id, m.completed_at, m.verified) for m in manifests]
        plan = plan_prune(records, [], policy, now)
        keep += plan.keep
        delete += plan.delete
        owners.update({m.id: label for m in manifests})
    debris = plan_prune([], [DebrisRecord(d.name, d.last_activity) for d in catalog.debris], policy, now)
    plan = PrunePlan(
        keep=keep, delete=delete, delete_debris=debris.delete_debris, keep_debris=debris.keep_debris
    )
    return plan, owners


@dataclass(frozen=True)
class PruneResult:
    plan: PrunePlan
    deleted: list[str]
    debris_removed: list[str]
    owners: dict[str, str] = field(default_factory=dict)
    owner: str | None = None


def prune(
    storage: Storage,
    policy: RetentionPolicy,
    now: datetime,
    *,
    owner: str | None = None,
    every_owner: bool = False,
    dry_run: bool = False,
    deleted_one: Callable[[str], None] | None = None,
) -> PruneResult:
    """Apply retention under a prefix to `owner`'s backups (or every owner's, each on its own): delete the
    backups and debris `plan_by_owner` gives up. Other owners' backups are never touched.

    A backup's manifest is deleted first, so an interrupted prune leaves debris, never a listed backup
    whose dump is gone. `deleted_one` hears of each backup once it is gone."""
    catalog = scan(storage)
    plan, owners = plan_by_owner(
        catalog, policy, now, owner=owner, every_owner=every_owner, where=storage.location
    )
    deleted, removed = [], []
    if not dry_run:
        for decision in plan.delete:
            stored = catalog.keys.get(decision.id, [])
            manifest_key = f"{decision.id}/{MANIFEST}"
            storage.delete([manifest_key])
            storage.delete([key for key in stored if key != manifest_key])
            deleted.append(decision.id)
            if deleted_one is not None:
                deleted_one(decision.id)
        by_name = {d.name: d for d in catalog.debris}
        for record in plan.delete_debris:
            item = by_name[record.name]
            for write in item.pending:
                storage.discard_pending(write)
            storage.delete(item.keys)
            removed.append(record.name)
    return PruneResult(plan, deleted, removed, owners, owner)
