"""pgwarden's own stream compression around `pg_dump -Z0`: works with any pg_dump build and uses every core."""

from __future__ import annotations

import os
import re
import zlib
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from pgwarden.threads import HelperPool, stop_signals_blocked

ALGORITHMS = ("zstd", "lz4", "gzip", "none")
_DEFAULT_LEVELS: dict[str, int | None] = {"zstd": 3, "gzip": 6, "lz4": None, "none": None}
_LEVEL_RANGES = {"zstd": (1, 22), "gzip": (1, 9), "lz4": (0, 16)}
_SUFFIXES = {"zstd": ".zst", "lz4": ".lz4", "gzip": ".gz", "none": ""}
ZSTD_JOB_SIZE = 1024 * 1024
_SPEC = re.compile(r"^(?P<algorithm>[a-z0-9]+)(?::(?P<level>-?\d+))?$")


@dataclass(frozen=True)
class CompressionSpec:
    """An algorithm and level, written `zstd:3`, `lz4`, `gzip:6` or `none`."""

    algorithm: str
    level: int | None = None

    def __str__(self) -> str:
        return self.algorithm if self.level is None else f"{self.algorithm}:{self.level}"

    @property
    def suffix(self) -> str:
        return _SUFFIXES[self.algorithm]


def parse_compression(spec: str) -> CompressionSpec:
    """Parse a compression spec; ValueError naming the accepted forms otherwise."""
    match = _SPEC.match(spec.strip().lower())
    algorithm = match.group("algorithm") if match else ""
    if algorithm == "zst":
        algorithm = "zstd"
    if not match or algorithm not in ALGORITHMS:
        raise ValueError(f"unknown compression {spec!r}; use zstd[:1-22], lz4[:0-16], gzip[:1-9] or none")
    level_text = match.group("level")
    if algorithm == "none":
        if level_text is not None:
            raise ValueError("compression 'none' takes no level")
        return CompressionSpec("none")
    if level_text is None and _DEFAULT_LEVELS[algorithm] is None:
        return CompressionSpec(algorithm)  # lz4: its default (fast) mode, written plainly
    level = int(level_text) if level_text is not None else _DEFAULT_LEVELS[algorithm]
    low, high = _LEVEL_RANGES[algorithm]
    if level is None or not low <= level <= high:
        raise ValueError(f"{algorithm} level must be between {low} and {high}, not {level_text}")
    return CompressionSpec(algorithm, level)


DEFAULT_COMPRESSION = CompressionSpec("zstd", 3)


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes:
        """Raise ValueError if the stream ended before its end marker (a truncated file)."""
        ...


def compression_threads() -> int:
    """zstd worker threads: every core we may use (PGWARDEN_COMPRESSION_THREADS overrides)."""
    forced = os.environ.get("PGWARDEN_COMPRESSION_THREADS")
    if forced and forced.isdigit():
        return int(forced)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        threads = compression_threads()
        # threads=0 compresses in the calling thread; >= 2 runs that many zstd workers beside it, each on
        # 1 MiB jobs: zstd's default job (4x the window, 8 MiB at level 3) costs 50 MB more for no speed.
        if threads > 1:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, threads=threads, job_size=ZSTD_JOB_SIZE, write_checksum=True
            )
            cctx = zstandard.ZstdCompressor(compression_params=params)
        else:
            cctx = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True)
        self._obj: Any = cctx.compressobj()
        self._flush_finish = zstandard.COMPRESSOBJ_FLUSH_FINISH

    # zstd starts its workers inside a call (the first, or any after a reset), from the calling thread:
    # born with SIGTERM and SIGINT blocked, they leave both to the main thread (pgwarden.threads).
    def compress(self, data: bytes) -> bytes:
        with stop_signals_blocked():
            return bytes(self._obj.compress(data))

    def finish(self) -> bytes:
        with stop_signals_blocked():
            return bytes(self._obj.flush(self._flush_finish))


class _ZstdReader:
    def __init__(self) -> None:
        import zstandard

        self._obj: Any = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._obj.decompress(data))

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise ValueError("the zstd stream ends before its end marker")
        return b""


class _Lz4:
    def __init__(self, level: int) -> None:
        import lz4.frame

        self._obj: Any = lz4.frame.LZ4FrameCompressor(compression_level=level, content_checksum=True)
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b""
        if not self._started:
            head, self._started = bytes(self._obj.begin()), True
        return head + bytes(self._obj.compress(data))

    def finish(self) -> bytes:
        head = b"" if self._started else bytes(self._obj.begin())
        return head + bytes(self._obj.flush())


class _Lz4Reader:
    def __init__(self) -> None:
        import lz4.frame

        self._obj: Any = lz4.frame.LZ4FrameDecompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._obj.decompress(data))

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise ValueError("the lz4 stream ends before its end marker")
        return b""


def _gzip_member(level: int, data: bytes) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    return packer.compress(data) + packer.flush()


class _Gzip:
    """Gzip on every core, as pigz does: 4 MiB blocks compressed in parallel, each a gzip member.

    Concatenated members are one valid gzip file (RFC 1952), readable by any gunzip; zlib releases the
    GIL while it compresses, so threads really run side by side. At most 2 blocks per thread are in flight.
    """

    BLOCK = 4 * 1024 * 1024

    def __init__(self, level: int) -> None:
        self._level = level
        self._threads = max(1, compression_threads())
        self._pool = HelperPool(max_workers=self._threads, thread_name_prefix="gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()

    def _submit(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(_gzip_member, self._level, block))

    def _ready(self, *, wait_all: bool = False) -> bytes:
        out = []
        while self._pending and (
            wait_all or self._pending[0].done() or len(self._pending) > 2 * self._threads
        ):
            out.append(self._pending.popleft().result())
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self._buffer += data
        while len(self._buffer) >= self.BLOCK:
            self._submit(bytes(self._buffer[: self.BLOCK]))
            del self._buffer[: self.BLOCK]
        return self._ready()

    def finish(self) -> bytes:
        if self._buffer or not self._pending:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        try:
            return self._ready(wait_all=True)
        finally:
            self._pool.shutdown()


class _GzipReader:
    """Reads one or many concatenated gzip members."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(31)

    def decompress(self, data: bytes) -> bytes:
        out = [self._obj.decompress(data)]
        while self._obj.eof and self._obj.unused_data:
            rest = self._obj.unused_data
            self._obj = zlib.decompressobj(31)
            out.append(self._obj.decompress(rest))
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise ValueError("the gzip stream ends before its end marker")
        return self._obj.flush()


def compressor(spec: CompressionSpec) -> Compressor:
    if spec.algorithm == "zstd":
        return _Zstd(spec.level or 3)
    if spec.algorithm == "lz4":
        return _Lz4(spec.level or 0)
    if spec.algorithm == "gzip":
        return _Gzip(spec.level or 6)
    return _Identity()


def decompressor(spec: CompressionSpec) -> Decompressor:
    if spec.algorithm == "zstd":
        return _ZstdReader()
    if spec.algorithm == "lz4":
        return _Lz4Reader()
    if spec.algorithm == "gzip":
        return _GzipReader()
    return _Identity()
