"""Rehearse a migration run: restore a backup into a scratch database, run the same plan and verification
there while a second session samples the locks each statement takes, and say whether the real run may go.

The scratch database is dropped however the rehearsal ends (engine.postgres.scratch); the real database is only read
(by the caller, to plan). `migrate` passes the run itself in as `run_plan`, so this module does not import it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgwarden.api.reports import ErrorInfo, MigrationReport, Outcome, Rehearsal
from pgwarden.engine.backup.stored_dump import Identities, check_can_open
from pgwarden.engine.migrate.lock_sampling import LockSampler, over_limit
from pgwarden.engine.migrate.statements import StatementObserver
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.connect import database_name, describe, with_database
from pgwarden.engine.postgres.databases import derived_name
from pgwarden.engine.postgres.scratch import REHEARSAL_MARK, scratch_database
from pgwarden.engine.restore.restore import restore_manifest
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import register_environment
from pgwarden.storage import StorageError, locate_rehearsal_backup, open_storage
from pgwarden.storage.base import InvalidLocation, ObjectNotFound

Say = Callable[[str], None]
RunPlan = Callable[[str, tuple[StatementObserver, ...]], MigrationReport]


@dataclass(frozen=True)
class RehearsalOptions:
    """Where the backup is, on which server to restore it, and how long a lock that blocks writes may be held."""

    location: str
    """A backup, or a prefix holding backups: then its newest verified one (else newest, with a warning)."""
    owner: str | None = None
    """Whose backups under a prefix (None: the only owner's there)."""
    server_url: str | None = None
    """A connection string naming the server for the scratch copy (its database part is not used)."""
    max_lock_hold_seconds: float | None = None
    sample_interval: float = 0.05
    identities: Identities = ()
    """age identities that open a sealed backup (`--identity`)."""


def rehearse(url: str, options: RehearsalOptions, run_plan: RunPlan, say: Say) -> Rehearsal:
    """Restore, run, sample, judge. BadInput when there is no backup at the location (nothing was done);
    every other failure is a Failed rehearsal, and the scratch database is gone either way."""
    register_environment()
    try:
        storage = open_storage(options.location)
        backup, manifest, warning = locate_rehearsal_backup(storage, owner=options.owner)
    except (InvalidLocation, ObjectNotFound) as exc:
        raise BadInput(
            f"--rehearse-from: {exc}; pass the location of a backup or of a prefix holding backups"
        ) from exc
    except StorageError as exc:
        raise BadInput(f"--rehearse-from: the backups at {options.location} cannot be read: {exc}") from exc
    check_can_open(backup, manifest, options.identities)  # a sealed backup without its key: exit 2 here
    server = options.server_url if options.server_url is not None else url
    name = derived_name(database_name(url), f"{REHEARSAL_MARK}{secrets.token_hex(3)}")
    result = Rehearsal(
        outcome=Outcome.FAILED,
        backup=backup.uri(),
        server=describe(with_database(server, name)),
        max_lock_hold_seconds=options.max_lock_hold_seconds,
        warnings=[warning] if warning else [],
    )
    if warning:
        say(f"rehearsal: {warning}")
    clock = time.monotonic()
    try:
        with scratch_database(server, name, say=say) as scratch_url:
            say(f"rehearsal: restoring backup {manifest.id} into the scratch database {name}")
            restore_manifest(scratch_url, backup, manifest, identities=options.identities, progress=say)
            result.restore_seconds = round(time.monotonic() - clock, 3)
            pause_point("rehearsal-restored")
            say(f"rehearsal: running the plan on {name}")
            ran = time.monotonic()
            with LockSampler(scratch_url, options.sample_interval) as sampler:
                report = run_plan(scratch_url, (sampler,))
            result.run_seconds = round(time.monotonic() - ran, 3)
            result.locks = sampler.locks()
            lock_watch_lost = sampler.lost
    except (PgwardenError, StorageError, psycopg.Error, OSError) as exc:
        result.error = ErrorInfo(message=f"the rehearsal failed before the plan ran: {exc}")
        result.duration_seconds = round(time.monotonic() - clock, 3)
        return result
    result.duration_seconds = round(time.monotonic() - clock, 3)
    return judge(result, report, lock_watch_lost)


def judge(result: Rehearsal, report: MigrationReport, lock_watch_lost: str | None = None) -> Rehearsal:
    """The rehearsal's outcome from the rehearsed run's report and the locks it took (pure). With a limit on
    lock holds, a run whose lock sampling stopped early (`lock_watch_lost`) fails: its holds are unknown."""
    result.applied = report.applied
    result.row_changes = report.row_changes
    result.verification = report.verification
    if report.outcome != Outcome.SUCCEEDED:
        cause = report.error.message if report.error else f"the rehearsed run ended {report.outcome}"
        result.error = ErrorInfo(
            message=f"the rehearsal failed: {cause}",
            migration=report.error.migration if report.error else None,
            statement=report.error.statement if report.error else None,
            line=report.error.line if report.error else None,
        )
        return result
    limit = result.max_lock_hold_seconds
    if limit is not None and lock_watch_lost is not None:
        result.error = ErrorInfo(
            message=f"the rehearsal lost the session that watches its locks ({lock_watch_lost}), so it cannot "
            f"tell whether a lock that blocks writes was held longer than {limit:g}s; rehearse again"
        )
        return result
    too_long = over_limit(result.locks, limit) if limit is not None else []
    if too_long:
        listed = "; ".join(
            f"{lock.mode} on {lock.relation} held {lock.held_seconds:.1f}s"
            + (f" from {lock.statement}" if lock.statement else "")
            for lock in too_long
        )
        result.error = ErrorInfo(
            message=f"the rehearsal held locks that block writes longer than {limit:g}s: {listed}",
            migration=too_long[0].migration,
        )
        return result
    result.outcome = Outcome.SUCCEEDED
    return result
