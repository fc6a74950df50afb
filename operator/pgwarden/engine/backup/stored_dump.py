"""Reading a stored dump back in one pass: checksum, age, decompression, and on to pg_restore or a local file.

Every byte read from storage is hashed on the way; the last chunk of what comes out is held back until the
stored object's size and SHA-256 matched its manifest, so whatever acts at the end of its input (pg_restore
committing its single transaction) never sees the end of a dump that turns out to be corrupted.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import zstandard
from pyrage import x25519

from pgwarden.engine.backup.compression import Decompressor, decompressor, parse_compression
from pgwarden.engine.backup.encryption import SealFailed, check_identity, open_sealed
from pgwarden.engine.backup.streaming import CHUNK, ChunkReader, HashingReader, HeldBack, Push
from pgwarden.engine.pause_points import pause_point
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.storage import BackupManifest, ObjectNotFound, Storage, StorageError
from pgwarden.storage.base import join_key
from pgwarden.storage.manifest import StoredFile
from pgwarden.threads import HelperPool

Identities = Sequence[x25519.Identity]
IDENTITY_PROBE = 64 * 1024


class RestoreFailed(PgwardenError):
    """The restore did not happen or did not finish; the message says how far it got."""


class CorruptBackup(RestoreFailed):
    """The stored dump does not match its manifest's size or checksum; nothing was restored."""


class ManifestRefused(BadInput):
    """The manifest names an object outside its own backup folder: it is not read, nothing is restored."""


def stored_objects(manifest: BackupManifest) -> list[StoredFile]:
    """Every object a backup's dump is stored as, with the size and checksum each must have; ManifestRefused
    when the manifest names one outside the backup (a manifest edited by hand, or by a tool gone wrong)."""
    if manifest.files is not None:
        objects = list(manifest.files)
    else:
        objects = [
            StoredFile(
                name=manifest.dump_file,
                key=manifest.dump_file,
                size_bytes=manifest.size_bytes,
                sha256=manifest.sha256,
            )
        ]
    for stored in objects:
        parts = stored.key.split("/")
        if stored.key.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ManifestRefused(
                f"backup {manifest.id}'s manifest names {stored.key!r}, outside the backup's own folder; "
                "refusing to read it, nothing was restored. Restore a backup whose manifest pgwarden wrote"
            )
    return objects


def check_can_open(backup: Storage, manifest: BackupManifest, identities: Identities) -> None:
    """ManifestRefused unless every object the manifest names lies inside the backup; for a sealed backup,
    IdentityRefused (bad input) unless one of `identities` opens it. Read-only, so it runs before anything
    is created or changed."""
    first = stored_objects(manifest)[0]
    if manifest.encryption is None:
        return
    try:
        with backup.open_reader(first.key) as reader:
            head = reader.read(IDENTITY_PROBE)
    except ObjectNotFound as exc:
        raise CorruptBackup(_missing(backup, manifest, first.key)) from exc
    except StorageError as exc:
        raise RestoreFailed(f"cannot read backup {manifest.id}: {exc}; nothing was restored") from exc
    check_identity(head, identities, f"backup {manifest.id}")


def _missing(backup: Storage, manifest: BackupManifest, key: str) -> str:
    return f"backup {manifest.id} has a manifest but no dump ({backup.uri(key)}); nothing was restored"


PAUSE_AFTER = 20 * 1024 * 1024  # the "restore-mid-stream" pause point, for tests
# Once pg_restore stopped reading, the rest of the object is still read, for the checksum's verdict (a
# corrupted dump makes pg_restore fail early), but not without end: past this, pg_restore's error stands.
DRAIN_LIMIT = 256 * 1024 * 1024


class _GaveUp(Exception):
    """The consumer went away and reading on for the checksum would take too long."""


class _Pipeline:
    """Stored bytes in, dump bytes out: [age] -> decompression -> `push`, stopping output (but not the
    checksum) once the consumer went away."""

    def __init__(self, codec: Decompressor, push: Push) -> None:
        self._codec, self._push = codec, push
        self.consumer_gone = False
        self._pushed = 0
        self._after_gone = 0

    def _out(self, data: bytes) -> None:
        if data and not self.consumer_gone:
            if self._pushed < PAUSE_AFTER <= self._pushed + len(data):
                pause_point("restore-mid-stream")
            self._pushed += len(data)
            try:
                self._push(data)
            except BrokenPipeError:
                self.consumer_gone = True  # pg_restore stopped; read on for the checksum, which may say why

    def decompress(self, data: bytes) -> None:
        if not self.consumer_gone:
            self._out(_decompress(self._codec.decompress, data))
        else:
            self._after_gone += len(data)
            if self._after_gone > DRAIN_LIMIT:
                raise _GaveUp

    def finish(self) -> None:
        if not self.consumer_gone:
            self._out(_decompress(lambda _b: self._codec.finish(), b""))


def _decompress(step: Callable[[bytes], bytes], data: bytes) -> bytes:
    try:
        return step(data)
    except (ValueError, OSError) as exc:
        raise CorruptBackup(f"the dump cannot be decompressed: {exc}; nothing was restored") from exc
    except (zstandard.ZstdError, RuntimeError, zlib.error) as exc:  # lz4's errors are RuntimeErrors
        raise CorruptBackup(
            f"the dump cannot be decompressed: {type(exc).__name__}: {exc}; nothing was restored"
        ) from exc


def stream_object(
    backup: Storage, manifest: BackupManifest, stored: StoredFile, identities: Identities, push: Push
) -> bool:
    """Read one stored object, check it against `stored`, and push the dump bytes it holds; the last chunk
    is pushed only after the checks passed. Returns False when the consumer stopped reading early."""
    where = backup.uri(stored.key)
    held = HeldBack(push)
    pipeline = _Pipeline(decompressor(parse_compression(manifest.compression)), held.write)
    try:
        with backup.open_reader(stored.key) as raw:
            source = HashingReader(raw)
            try:
                if manifest.encryption is not None:
                    open_sealed(source, identities, pipeline.decompress, where)
                else:
                    for block in source.blocks():
                        pipeline.decompress(block)
                if source.read(1):  # age stops at its last chunk: anything after it was appended
                    raise SealFailed(f"{where} has bytes after the end of its sealed stream")
                while source.read(CHUNK):  # the consumer went away: hash the rest for the verdict
                    pass
            except (CorruptBackup, SealFailed) as exc:
                while source.read(CHUNK):
                    pass
                _check(manifest, stored, where, source)
                raise CorruptBackup(f"backup {manifest.id} is corrupted: {exc}") from exc
            except _GaveUp:
                return False
            _check(manifest, stored, where, source)
            pipeline.finish()
    except ObjectNotFound as exc:
        raise CorruptBackup(_missing(backup, manifest, stored.key)) from exc
    except StorageError as exc:
        raise RestoreFailed(f"cannot download backup {manifest.id}: {exc}; nothing was restored") from exc
    if not pipeline.consumer_gone:
        try:
            held.release()
        except BrokenPipeError:
            return False
    return not pipeline.consumer_gone


def _check(manifest: BackupManifest, stored: StoredFile, where: str, source: HashingReader) -> None:
    if source.size != stored.size_bytes or source.hexdigest() != stored.sha256:
        raise CorruptBackup(
            f"backup {manifest.id} is corrupted: {where} has {source.size} bytes and sha256 "
            f"{source.hexdigest()}, its manifest says {stored.size_bytes} bytes and sha256 {stored.sha256}; "
            "nothing was restored. Restore another backup (pgwarden backups lists them)."
        )


def download_verified(
    backup: Storage, manifest: BackupManifest, target: Path, identities: Identities = (), *, jobs: int = 1
) -> None:
    """Make the dump restorable from local disk, every stored byte checked against the manifest first:
    custom format as the plain archive at `target`, directory format as pg_dump's directory at `target`
    (its files fetched `jobs` at a time)."""
    if manifest.format != "directory":
        with target.open("wb") as out:
            stream_object(backup, manifest, stored_objects(manifest)[0], identities, out.write)
        return
    target.mkdir(parents=True, exist_ok=True)
    if manifest.files is None:  # a backup from before per-file storage: one tar of the directory
        _extract_tar(backup, manifest, target, identities)
        return

    def fetch(stored: StoredFile) -> None:
        with (target / Path(stored.name).name).open("wb") as out:
            stream_object(backup, manifest, stored, identities, out.write)

    with HelperPool(max_workers=max(1, jobs), thread_name_prefix="download") as pool:
        for done in [pool.submit(fetch, stored) for stored in manifest.files]:
            done.result()


def _extract_tar(backup: Storage, manifest: BackupManifest, target: Path, identities: Identities) -> None:
    """Older directory-format backups are one compressed tar: check it whole, then unpack it."""
    packed = target.with_name(target.name + ".tar")
    try:
        with packed.open("wb") as out:
            stream_object(backup, manifest, stored_objects(manifest)[0], identities, out.write)
        with packed.open("rb") as source:
            chunks = iter(lambda: source.read(CHUNK), b"")
            with tarfile.open(fileobj=ChunkReader(chunks), mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(target, filter="data")
    finally:
        packed.unlink(missing_ok=True)


def object_key(dump_file: str, name: str, suffix: str) -> str:
    """Where pg_dump's file `name` of a directory-format backup is stored inside its backup folder."""
    return join_key(dump_file, f"{name}{suffix}")
