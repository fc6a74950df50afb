"""What every storage backend offers, so backups stream the same way to a volume and to S3."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from pgwarden.errors import PgwardenError


class StorageError(PgwardenError):
    """Storage refused or failed an operation; the message names the object and says why."""


class ObjectNotFound(StorageError):
    """The object does not exist (or is not readable) at that key."""


class InvalidLocation(StorageError):
    """The location (URI or path) cannot be used as storage; the message says what a valid one looks like."""


@dataclass(frozen=True)
class StoredObject:
    """One complete object, by key relative to the storage's root."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class PendingWrite:
    """A write that was started and never finished (an open multipart upload, a partial file)."""

    key: str
    last_activity: datetime
    upload_id: str | None = None


class ObjectWriter(Protocol):
    """A streaming put: nothing is visible at the key until `commit`; `abort` leaves nothing behind."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage(Protocol):
    """A place for backups: keys are '/'-separated and relative to the storage's root location."""

    @property
    def location(self) -> str:
        """The root as the user wrote it (s3://bucket/prefix or a path), without credentials."""
        ...

    def child(self, key: str) -> Storage:
        """The same storage rooted one level (or more) deeper."""
        ...

    def uri(self, key: str = "") -> str:
        """The location of a key, for reports."""
        ...

    def open_writer(self, key: str, *, size_hint: int | None = None) -> ObjectWriter:
        """Start a streaming put; `size_hint` (bytes, an estimate) lets S3 pick its part size."""
        ...

    def open_reader(self, key: str) -> BinaryIO:
        """A streaming get; raises ObjectNotFound when the key does not exist."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object at once (atomically: readers see the old or the new content)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        """Every complete object under `prefix`, recursively, sorted by key."""
        ...

    def list_pending(self, prefix: str = "") -> list[PendingWrite]:
        """Writes started under `prefix` that were never committed nor aborted (a killed backup's debris)."""
        ...

    def discard_pending(self, pending: PendingWrite) -> None: ...

    def delete(self, keys: list[str]) -> None:
        """Delete objects; keys that are already gone are not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def check_writable(self) -> None:
        """Raise StorageError unless an object can be written and deleted here (a preflight)."""
        ...


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and stray slashes."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))
