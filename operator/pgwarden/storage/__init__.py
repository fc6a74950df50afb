"""Where backups live: filesystem and S3 backends behind one streaming interface, manifests and retention."""

from pgwarden.storage.base import (
    InvalidLocation,
    ObjectNotFound,
    ObjectWriter,
    PendingWrite,
    Storage,
    StorageError,
    StoredObject,
)
from pgwarden.storage.location import Location, open_storage, parse_location
from pgwarden.storage.manifest import BackupManifest, list_backups, locate_backup, locate_rehearsal_backup
from pgwarden.storage.ownership import NotTheOwners, Owner, OwnerNotChosen, owner_of

__all__ = [
    "BackupManifest",
    "InvalidLocation",
    "Location",
    "NotTheOwners",
    "ObjectNotFound",
    "ObjectWriter",
    "Owner",
    "OwnerNotChosen",
    "PendingWrite",
    "Storage",
    "StorageError",
    "StoredObject",
    "list_backups",
    "locate_backup",
    "locate_rehearsal_backup",
    "open_storage",
    "owner_of",
    "parse_location",
]
