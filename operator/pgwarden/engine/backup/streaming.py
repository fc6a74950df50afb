"""Byte streams between storage, our codecs and the PostgreSQL tools, in constant memory and linear time.

Storage hands out readers, pg_restore takes a pipe, age pulls from a reader and pushes into a writer:
these adapters join them without ever re-copying a buffer that grows with the stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024

Push = Callable[[bytes], object]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ChunkReader:
    """A read-only file over an iterator of chunks: each chunk is served from a cursor into it, so a
    read costs what it returns (the old buffer re-sliced the whole tail on every read: quadratic)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")
        self._done = False

    def _fill(self) -> bool:
        while not self._current and not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
            else:
                self._current = memoryview(chunk)
        return bool(self._current)

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._current))
                self._current = memoryview(b"")
            return b"".join(parts)
        parts, wanted = [], size
        while wanted > 0 and self._fill():
            piece = self._current[:wanted]
            self._current = self._current[len(piece) :]
            parts.append(bytes(piece))
            wanted -= len(piece)
        return b"".join(parts)


class HashingReader:
    """Reads a stored object in large blocks, hashing and counting every byte on the way, and serves
    reads of any size from the current block (age asks for 8 KiB at a time)."""

    def __init__(self, source: BinaryIO | Readable, block: int = CHUNK) -> None:
        self._source, self._block = source, block
        self._digest = hashlib.sha256()
        self.size = 0
        self._reader = ChunkReader(self._blocks())

    def _blocks(self) -> Iterator[bytes]:
        while chunk := self._source.read(self._block):
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    def read(self, size: int = -1, /) -> bytes:
        return self._reader.read(size)

    def blocks(self) -> Iterator[bytes]:
        """The rest of the stream, block by block (for callers that take whole blocks)."""
        while block := self._reader.read(self._block):
            yield block

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class HeldBack:
    """Passes bytes on one chunk late: the last chunk is released only by `release`, after the caller has
    checked the whole stream (its checksum), so a reader that acts at end of input (pg_restore's COMMIT)
    never sees the end of a stream that turns out corrupted."""

    def __init__(self, push: Push) -> None:
        self._push = push
        self._held: bytes | None = None

    def write(self, data: bytes) -> int:
        if data:
            if self._held is not None:
                self._push(self._held)
            self._held = bytes(data)
        return len(data)

    def release(self) -> None:
        if self._held is not None:
            self._push(self._held)
            self._held = None


class PushWriter:
    """A writable file whose bytes go to a function (what age's decrypt_io writes into)."""

    def __init__(self, push: Push) -> None:
        self._push = push

    def write(self, data: bytes) -> int:
        if data:
            self._push(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None
