"""A second copy of a backup: every stored object copied to a further storage (server-side when both ends
are the same S3 service, else streamed), read back and checked by checksum there, and its manifest written
last, so the copy is a complete backup of its own: listed, restorable and pruned where it lives."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence

from pgwarden.api.copies import BackupCopy
from pgwarden.engine.backup.stored_dump import stored_objects
from pgwarden.engine.backup.streaming import CHUNK
from pgwarden.errors import BadInput
from pgwarden.storage import BackupManifest, InvalidLocation, Storage, StorageError, open_storage
from pgwarden.storage.manifest import MANIFEST, StoredFile, write_manifest
from pgwarden.storage.s3 import S3Storage


class CopyMismatch(StorageError):
    """An object read back from the copy does not match the checksum its manifest records."""


def open_copy_targets(uris: Sequence[str | Storage]) -> list[Storage]:
    """The storages `--copy-to` names (or a caller built, e.g. with their own S3 endpoint and credentials);
    BadInput for a malformed location (before the backup starts)."""
    targets = []
    for uri in uris:
        if not isinstance(uri, str):
            targets.append(uri)
            continue
        try:
            targets.append(open_storage(uri))
        except InvalidLocation as exc:
            raise BadInput(f"--copy-to: {exc}") from exc
    return targets


def _stream_object(source: Storage, target: Storage, stored: StoredFile) -> None:
    writer = target.open_writer(stored.key, size_hint=stored.size_bytes)
    try:
        with source.open_reader(stored.key) as reader:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _server_side(source: Storage, target: Storage, stored: StoredFile) -> bool:
    """Copy inside the S3 service when both ends are on it; False when not possible (then stream)."""
    if not (isinstance(target, S3Storage) and isinstance(source, S3Storage) and target.same_service(source)):
        return False
    try:
        target.copy_within(source, stored.key, stored.key, stored.size_bytes)
    except StorageError:
        return False  # e.g. the credentials may read one bucket and write the other, but not copy across
    return True


def check_stored(target: Storage, stored: StoredFile) -> None:
    """Read an object back and compare its size and SHA-256 with the manifest's; CopyMismatch otherwise."""
    digest, size = hashlib.sha256(), 0
    with target.open_reader(stored.key) as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != stored.size_bytes or digest.hexdigest() != stored.sha256:
        raise CopyMismatch(
            f"{target.uri(stored.key)} has {size} bytes and sha256 {digest.hexdigest()} after copying, "
            f"the manifest says {stored.size_bytes} bytes and sha256 {stored.sha256}"
        )


def copy_backup(source: Storage, manifest: BackupManifest, prefix: Storage) -> BackupCopy:
    """Copy the complete backup at `source` to `<prefix>/<id>/`, verify it there, write its manifest last.

    Never raises for a storage failure: the result says what failed, and what the copy had stored is
    deleted again, so a failed copy is never listed there."""
    started = time.monotonic()
    target = prefix.child(manifest.id)
    objects = stored_objects(manifest)
    server_side = True
    try:
        for stored in objects:
            if not _server_side(source, target, stored):
                server_side = False
                _stream_object(source, target, stored)
        for stored in objects:
            check_stored(target, stored)
        write_manifest(target, manifest)
    except StorageError as exc:
        with contextlib.suppress(StorageError):
            target.delete([MANIFEST, *(stored.key for stored in objects)])
        return BackupCopy(location=target.uri(), sha256=manifest.sha256, verified=False, error=str(exc))
    except BaseException:
        with contextlib.suppress(StorageError):
            target.delete([MANIFEST, *(stored.key for stored in objects)])
        raise
    return BackupCopy(
        location=target.uri(),
        sha256=manifest.sha256,
        verified=True,
        server_side=server_side,
        size_bytes=sum(stored.size_bytes for stored in objects),
        duration_seconds=round(time.monotonic() - started, 3),
    )


def check_copy_targets(primary: Storage, targets: list[Storage]) -> None:
    """Preflight: every copy target differs from the primary and can be written; raises BadInput naming a
    target that is the primary itself, StorageError for one that cannot be written."""
    for target in targets:
        if target.location.rstrip("/") == primary.location.rstrip("/"):
            raise BadInput(
                f"--copy-to {target.location} is where the backup itself goes; name a further storage"
            )
        target.check_writable()


def make_copies(
    backup: Storage, manifest: BackupManifest, targets: list[Storage], say: Callable[[str], None]
) -> tuple[list[BackupCopy], str | None]:
    """Copy a complete backup to each target in turn; the copies, and a sentence naming those that failed."""
    copies = []
    for prefix in targets:
        say(f"copying backup {manifest.id} to {prefix.uri(manifest.id)}")
        copy = copy_backup(backup, manifest, prefix)
        say(f"copy at {copy.location}: " + ("verified" if copy.verified else f"FAILED: {copy.error}"))
        copies.append(copy)
    failed = [copy for copy in copies if not copy.verified]
    if not failed:
        return copies, None
    where = "; ".join(f"{copy.location}: {copy.error}" for copy in failed)
    return copies, (
        f"backup {manifest.id} is complete at {backup.uri()}, but {len(failed)} of its {len(copies)} copies "
        f"failed ({where}); copy it again once that storage works"
    )
