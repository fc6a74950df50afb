"""Where pg_dump's bytes go: our compression, then (optionally) age, then SHA-256 and storage, all streaming.

The checksum is taken over exactly what is stored, after sealing, so a restore can check the stored object
before it opens anything; the byte counts before and after give the manifest its sizes and the throughput.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pyrage import x25519

from pgwarden.engine.backup.compression import Compressor
from pgwarden.engine.backup.encryption import Sealer
from pgwarden.storage import ObjectWriter


class DumpSink:
    """Compresses, seals (when given recipients), hashes and writes the dump stream; counts bytes before
    and after. A file-like `write` target for pg_dump's output."""

    def __init__(
        self, codec: Compressor, writer: ObjectWriter, recipients: Sequence[x25519.Recipient] = ()
    ) -> None:
        self._codec, self._writer = codec, writer
        self._digest = hashlib.sha256()
        self._sealer = Sealer(recipients, self._emit) if recipients else None
        self.raw_bytes = 0
        self.stored_bytes = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            self.stored_bytes += len(data)
            self._writer.write(data)

    def _forward(self, data: bytes) -> None:
        if self._sealer is not None:
            self._sealer.write(data)
        else:
            self._emit(data)

    def write(self, data: bytes) -> int:
        self.raw_bytes += len(data)
        self._forward(self._codec.compress(data))
        return len(data)

    def finish(self) -> str:
        """Flush the codec (and seal the last chunk); the SHA-256 of everything stored."""
        self._forward(self._codec.finish())
        if self._sealer is not None:
            self._sealer.finish()
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop the sealing thread, if any; the caller aborts the writer."""
        if self._sealer is not None:
            self._sealer.abort()
