"""What a backup is asked for (`BackupOptions`, every field `pgwarden backup`'s default) and the checks that
refuse unusable options with BadInput before anything starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyrage import x25519

from pgwarden.api.backup import DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.api.reports import RestoreComparison
from pgwarden.engine.backup.compression import DEFAULT_COMPRESSION, CompressionSpec, parse_compression
from pgwarden.engine.backup.encryption import parse_recipients
from pgwarden.engine.backup.locks import lock_wait_option
from pgwarden.engine.backup.selection import DumpSelection
from pgwarden.engine.backup.stored_dump import Identities
from pgwarden.errors import BadInput
from pgwarden.storage import BackupManifest, Storage

FORMATS = ("custom", "directory")

Progress = Callable[[str], None]


class BackupVerifier(Protocol):
    """Restores a just-dumped backup somewhere and compares it with its manifest (`backup --verify`).

    The restore room provides one (`engine.restore.verify.verify_backup`); take_backup only calls it,
    between the dump landing and its manifest being written, so a mismatching dump is never listed."""

    def __call__(
        self,
        url: str,
        backup: Storage,
        manifest: BackupManifest,
        *,
        jobs: int,
        schemas: set[str] | None,
        identities: Identities,
        progress: Progress,
    ) -> RestoreComparison: ...


@dataclass(frozen=True)
class BackupOptions:
    """How to take a backup; every field defaults to what `pgwarden backup` does without flags."""

    format: str = "custom"
    compression: CompressionSpec | str = DEFAULT_COMPRESSION
    jobs: int = 1
    # Restore the dump and compare it with its manifest before it is listed (None: no verification).
    verify: BackupVerifier | None = None
    # Only these tables are dumped and counted (then no schema fingerprint: it describes whole databases).
    selection: DumpSelection = field(default_factory=DumpSelection)
    # The resource that made the backup, or a label; None: the database owns it (retention, `latest`).
    owner: str | None = None
    # age public keys: every stored byte is sealed to them; `verify` then needs one of `identities`.
    encrypt_to: Sequence[str] = ()
    identities: Identities = ()
    # Once complete, the backup is copied to each of these and verified there.
    copy_to: Sequence[str | Storage] = ()
    # pg_dump and the counts wait at most this long for a table lock.
    lock_wait_timeout: str = DEFAULT_LOCK_WAIT_TIMEOUT


@dataclass(frozen=True)
class CheckedOptions:
    """The options, parsed: BadInput was raised for anything unusable before anything started."""

    spec: CompressionSpec
    owner: str | None
    recipients: list[x25519.Recipient]
    lock_options: list[str]


def check_options(options: BackupOptions) -> CheckedOptions:
    spec = _parse_inputs(options.format, options.compression, options.jobs)
    owner = _parse_owner(options.owner)
    recipients = parse_recipients(options.encrypt_to)
    if options.verify is not None and recipients and not options.identities:
        raise BadInput(
            "--verify of an encrypted backup restores it, which needs the identity of one of its recipients: "
            "pass --identity FILE (the age identity file), or leave out --verify"
        )
    return CheckedOptions(spec, owner, recipients, lock_wait_option(options.lock_wait_timeout))


def _parse_inputs(format: str, compression: CompressionSpec | str, jobs: int) -> CompressionSpec:
    if format not in FORMATS:
        raise BadInput(f"unknown format {format!r}; use custom or directory")
    if jobs < 1:
        raise BadInput("parallel jobs must be at least 1")
    if jobs > 1 and format != "directory":
        raise BadInput("parallel jobs need --format directory (pg_dump dumps custom format in one job)")
    if isinstance(compression, CompressionSpec):
        return compression
    try:
        return parse_compression(compression)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


OWNER_MAX_LENGTH = 253


def _parse_owner(owner: str | None) -> str | None:
    """An owner label as given (None or blank: the database owns the backup); BadInput when unusable."""
    if owner is None or not owner.strip():
        return None
    owner = owner.strip()
    if len(owner) > OWNER_MAX_LENGTH or any(ch.isspace() and ch != " " for ch in owner):
        raise BadInput(
            f"owner {owner[:40]!r} is not usable; give a label of at most {OWNER_MAX_LENGTH} characters "
            "on one line, e.g. shop-nightly"
        )
    return owner
