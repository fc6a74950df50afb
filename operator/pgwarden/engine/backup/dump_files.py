"""pg_dump's directory format stored file by file: each table's file compressed, sealed, hashed and uploaded
on its own, `jobs` at a time, so a parallel dump is also a parallel upload (and a parallel download back)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, wait
from pathlib import Path

from pyrage import x25519

from pgwarden.engine.backup.compression import CompressionSpec, compressor
from pgwarden.engine.backup.dump_sink import DumpSink
from pgwarden.engine.backup.stored_dump import object_key
from pgwarden.engine.backup.streaming import CHUNK
from pgwarden.errors import PgwardenError
from pgwarden.storage import Storage
from pgwarden.storage.manifest import StoredFile
from pgwarden.threads import HelperPool


class UploadStopped(PgwardenError):
    """Another file's upload failed, so this one was given up."""


class DirectoryUpload:
    """Uploads the files of a pg_dump directory under `<backup>/<folder>/`; `committed` lists the keys
    already stored, which a caller deletes when the backup as a whole fails."""

    def __init__(
        self,
        backup: Storage,
        folder: str,
        spec: CompressionSpec,
        recipients: Sequence[x25519.Recipient] = (),
        suffix: str = "",
    ) -> None:
        self._backup, self._folder, self._spec = backup, folder, spec
        self._recipients = list(recipients)
        self._suffix = suffix
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.committed: list[str] = []
        self.raw_bytes = 0

    def _upload(self, path: Path) -> StoredFile:
        key = object_key(self._folder, path.name, self._suffix)
        writer = self._backup.open_writer(key, size_hint=path.stat().st_size)
        sink = DumpSink(compressor(self._spec), writer, self._recipients)
        try:
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    if self._stop.is_set():
                        raise UploadStopped(f"upload of {key} given up")
                    sink.write(chunk)
            sha256 = sink.finish()
            writer.commit()
        except BaseException:
            sink.abort()
            writer.abort()
            raise
        with self._lock:
            self.committed.append(key)
            self.raw_bytes += sink.raw_bytes
        return StoredFile(name=path.name, key=key, size_bytes=sink.stored_bytes, sha256=sha256)

    def run(self, directory: Path, jobs: int) -> list[StoredFile]:
        """Upload every file, largest first so the parallel jobs finish together; raise the first failure."""
        paths = sorted((p for p in directory.iterdir() if p.is_file()), key=lambda p: -p.stat().st_size)
        pool = HelperPool(max_workers=max(1, jobs), thread_name_prefix="upload")
        futures: list[Future[StoredFile]] = []
        try:  # a stop (SIGTERM) between two submissions still waits for the uploads already started
            futures.extend(pool.submit(self._upload, path) for path in paths)
            wait(futures, return_when="FIRST_EXCEPTION")
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                self._stop.set()
                failed.result()
            return sorted((f.result() for f in futures), key=lambda stored: stored.key)
        except BaseException:
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
