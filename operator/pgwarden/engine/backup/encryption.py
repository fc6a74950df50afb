"""Client-side encryption with age (pyrage): a dump is sealed to recipients' public keys after compression
and before upload, so the storage provider only ever holds ciphertext; only an identity opens it.

Sealing and opening stream: age encrypts 64 KiB chunks, each authenticated, so memory stays constant and
a changed byte is caught by the chunk that holds it. Only public keys are ever recorded or printed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from pgwarden.engine.backup.streaming import ChunkReader, Push, PushWriter, Readable
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import register_secret
from pgwarden.threads import start_helper

METHOD = "age"
HEADER_LIMIT = 64 * 1024  # an age header with a few dozen recipients is a few KiB
NONCE = 16  # the payload nonce that follows the header
_NO_MATCH = "No matching keys found"
SECRET_KEY_PREFIX = "AGE-SECRET-KEY-"


class IdentityRefused(BadInput):
    """The identity given does not open this backup (or none was given): nothing was restored."""


class SealFailed(PgwardenError):
    """The stored dump could not be opened with a matching identity: it was changed after it was sealed."""


def parse_recipients(texts: Sequence[str]) -> list[x25519.Recipient]:
    """age public keys (`age1…`) as recipients; BadInput naming the one that is not a key."""
    recipients = []
    for text in texts:
        if text.strip().upper().startswith(SECRET_KEY_PREFIX):
            # An identity where its public key belongs: never echo it (it would reach logs and status).
            register_secret(text.strip())
            raise BadInput(
                "--encrypt-to was given an age identity (a secret key), not a recipient; give its public key "
                "(age-keygen -y FILE prints it) and keep the identity out of the backup's settings"
            )
        try:
            recipients.append(x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError:
            # from None: what was given may be a secret key given by mistake; the cause would carry it whole
            raise BadInput(
                f"{text.strip()[:80]!r} is not an age recipient; give the public key age-keygen prints "
                "(age1…), e.g. --encrypt-to age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
            ) from None
    return recipients


def public_keys(recipients: Sequence[x25519.Recipient]) -> list[str]:
    """What the manifest records of the recipients: their public keys, which are not secret."""
    return [str(recipient) for recipient in recipients]


def load_identities(path: str | Path) -> list[x25519.Identity]:
    """The age identities in an identity file (`AGE-SECRET-KEY-1…` lines, `#` comments), as age-keygen
    writes it; BadInput when the file cannot be read or holds none. The keys are masked in all output."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read the identity file {file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        # from None: the decode error carries the identity file's bytes (secret keys) in its `object`
        raise BadInput(
            f"{file} is not a text file; give the identity file age-keygen wrote (AGE-SECRET-KEY-1… lines)"
        ) from None
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        register_secret(line)
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # from None: the line is a secret key, perhaps mistyped; the cause would carry it
            raise BadInput(
                f"line {number} of {file} is not an age identity; the file should hold the "
                "AGE-SECRET-KEY-1… line(s) age-keygen wrote"
            ) from None
    if not identities:
        raise BadInput(
            f"{file} holds no age identity (AGE-SECRET-KEY-1… lines); give the file age-keygen wrote"
        )
    return identities


class Sealer:
    """Encrypts what is written to it for the recipients and pushes the ciphertext on, as it goes.

    age's streaming API pulls from a reader, our dump pipeline pushes: encryption runs on a thread of its own
    reading from a small queue, so at most a few chunks are in memory."""

    def __init__(self, recipients: Sequence[x25519.Recipient], push: Push) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._failure: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(list(recipients), PushWriter(push)), name="age-seal", daemon=True
        )
        start_helper(self._thread)

    def _chunks(self) -> Any:
        while not self._stopped.is_set():
            chunk = self._queue.get()
            if chunk is None:
                return
            yield chunk

    def _run(self, recipients: list[x25519.Recipient], out: PushWriter) -> None:
        try:
            pyrage.encrypt_io(ChunkReader(self._chunks()), out, recipients)
        except BaseException as exc:  # handed to the writing thread, which raises it
            self._failure = exc

    def _put(self, item: bytes | None) -> None:
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full as exc:
                if not self._thread.is_alive():
                    self._raise_failure()
                    raise PgwardenError("encrypting the dump stopped unexpectedly") from exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure = self._failure
            if isinstance(failure, PgwardenError | OSError):  # the storage's own error
                raise failure
            raise PgwardenError(
                f"encrypting the dump failed: {type(failure).__name__}: {failure}"
            ) from failure

    def write(self, data: bytes) -> None:
        if data:
            self._put(bytes(data))

    def finish(self) -> None:
        """Seal the last chunk and wait until every byte was pushed on."""
        self._put(None)
        self._thread.join()
        self._raise_failure()

    def abort(self) -> None:
        self._stopped.set()
        while self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
            self._thread.join(timeout=0.1)


def header_end(head: bytes) -> int | None:
    """Where an age header ends (after its `--- MAC` line), or None when `head` holds no whole header."""
    marker = head.find(b"\n--- ")
    if not head.startswith(b"age-encryption.org/v1\n") or marker < 0:
        return None
    end = head.find(b"\n", marker + 1)
    return None if end < 0 else end + 1


class _ProbeDone(Exception):
    """The identity opened the header: the probe stops there."""


class _StopAtFirstByte:
    def write(self, data: bytes) -> int:
        raise _ProbeDone


def check_identity(head: bytes, identities: Sequence[x25519.Identity], where: str) -> None:
    """Raise IdentityRefused unless one of `identities` opens the age header at the start of a stored
    dump (`head`: its first bytes); SealFailed when the header is not a whole age header."""
    end = header_end(head[:HEADER_LIMIT])
    if end is None or len(head) < end + NONCE:
        raise SealFailed(
            f"{where} does not start with an age header: it is not the sealed dump its manifest names"
        )
    if not identities:
        raise IdentityRefused(
            f"{where} is encrypted with age; pass --identity FILE with the age identity of one of its "
            "recipients (the manifest lists their public keys); nothing was restored"
        )
    try:
        pyrage.decrypt_io(_Prefix(head[: end + NONCE]), _StopAtFirstByte(), list(identities))
    except _ProbeDone:
        return
    except pyrage.DecryptError as exc:
        if _NO_MATCH in str(exc):
            raise IdentityRefused(
                f"the identity given does not open {where}: it was sealed for other recipients (the manifest "
                "lists their public keys); pass the identity of one of them. Nothing was restored"
            ) from exc
        raise SealFailed(f"{where} has a damaged age header: {exc}") from exc
    except OSError:
        return  # the header opened; the probe's input simply ends after the nonce


class _Prefix:
    def __init__(self, data: bytes) -> None:
        self._reader = ChunkReader(iter([data]))

    def read(self, size: int = -1, /) -> bytes:
        return self._reader.read(size)


def open_sealed(source: Readable, identities: Sequence[x25519.Identity], push: Push, where: str) -> None:
    """Decrypt a sealed stream, pushing plaintext as each authenticated chunk opens; SealFailed when a
    chunk fails its authentication (the stored bytes were changed) or the stream was cut short."""
    try:
        pyrage.decrypt_io(source, PushWriter(push), list(identities))
    except pyrage.DecryptError as exc:
        if _NO_MATCH in str(exc):
            raise IdentityRefused(f"the identity given does not open {where}; nothing was restored") from exc
        raise SealFailed(f"{where} cannot be decrypted: {exc}") from exc
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise SealFailed(f"{where} cannot be decrypted: {exc}") from exc
