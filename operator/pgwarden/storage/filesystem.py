"""Backups on a filesystem path (a mounted volume): writes go to a hidden partial file, renamed on commit."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pgwarden.storage.base import (
    ObjectNotFound,
    PendingWrite,
    StorageError,
    StoredObject,
    join_key,
)

# `.<name>.partial-<random>` beside the final name: a killed writer leaves only such files behind.
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-[0-9a-f]{12}$")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileWriter:
    """A streaming write to a partial file; `commit` fsyncs and renames it to the final name."""

    def __init__(self, final: Path) -> None:
        self._final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._partial = final.with_name(f".{final.name}.partial-{secrets.token_hex(6)}")
        self._file: BinaryIO | None = self._partial.open("xb")

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise StorageError(f"write to {self._final} after it was closed")
        self._file.write(data)

    def commit(self) -> None:
        if self._file is None:
            raise StorageError(f"commit of {self._final} after it was closed")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._partial.replace(self._final)
            _fsync_dir(self._final.parent)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self._final}: {exc.strerror or exc}") from exc

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self._partial.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._final.parent.rmdir()  # only when empty: the folder a failed backup created


class FilesystemStorage:
    """Storage rooted at a directory; keys map to paths below it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def child(self, key: str) -> FilesystemStorage:
        return FilesystemStorage(self._path(key))

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def _path(self, key: str) -> Path:
        key = join_key(key)
        if any(part in ("..", ".") for part in key.split("/")):
            raise StorageError(f"refusing key {key!r}: it leaves the storage root")
        return self.root / key if key else self.root

    def open_writer(self, key: str, *, size_hint: int | None = None) -> FileWriter:
        try:
            return FileWriter(self._path(key))
        except OSError as exc:
            raise StorageError(f"cannot write {self._path(key)}: {exc.strerror or exc}") from exc

    def open_reader(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        writer = self.open_writer(key)
        try:
            writer.write(data)
        except OSError as exc:
            writer.abort()
            raise StorageError(f"cannot write {self._path(key)}: {exc.strerror or exc}") from exc
        writer.commit()

    def get_bytes(self, key: str) -> bytes:
        with self.open_reader(key) as reader:
            return reader.read()

    def _walk(self, prefix: str) -> list[tuple[str, os.stat_result, bool]]:
        """(key, stat, is_partial) for every file under prefix."""
        base = self._path(prefix)
        if not base.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    found.append(
                        (path.relative_to(self.root).as_posix(), path.stat(), bool(_PARTIAL.match(name)))
                    )
        return sorted(found, key=lambda item: item[0])

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        return [
            StoredObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
            for key, st, partial in self._walk(prefix)
            if not partial
        ]

    def list_pending(self, prefix: str = "") -> list[PendingWrite]:
        pending = []
        for key, st, partial in self._walk(prefix):
            if partial:
                pending.append(PendingWrite(key, datetime.fromtimestamp(st.st_mtime, UTC)))
        return pending

    def discard_pending(self, pending: PendingWrite) -> None:
        self.delete([pending.key])

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from exc
            parents.add(path.parent)
        # Remove directories the deletion emptied (a pruned backup's folder), never the root itself.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            directory = parent
            while directory != self.root and self.root in directory.parents:
                try:
                    directory.rmdir()
                except OSError:
                    break
                directory = directory.parent

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check_writable(self) -> None:
        probe = f".pgwarden-probe-{secrets.token_hex(6)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / probe).write_bytes(b"probe")
            (self.root / probe).unlink()
        except OSError as exc:
            raise StorageError(f"cannot write to {self.root}: {exc.strerror or exc}") from exc
