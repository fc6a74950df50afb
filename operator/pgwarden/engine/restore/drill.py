"""Restore drills: prove the newest complete backup under a prefix restores, and how long that takes.

The backup is restored into a scratch database (engine.postgres.scratch: dropped however the drill ends, even after a
SIGKILL) on the server given, its tables, exact per-table rows and schema fingerprint are compared with the
manifest, and a match is recorded in the manifest (verified, verifiedAt). The database the backup was taken
from is never connected to: everything comes from storage.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from pgwarden.api.drill import DrillReport
from pgwarden.api.reports import ErrorInfo, Outcome
from pgwarden.engine.backup.stored_dump import Identities, check_can_open
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.connect import connect, describe, resolve_url, with_database
from pgwarden.engine.postgres.databases import derived_name
from pgwarden.engine.postgres.scratch import scratch_database
from pgwarden.engine.restore.restore import compare_counts, restore_manifest, restored_state
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import register_environment
from pgwarden.storage import (
    BackupManifest,
    ObjectNotFound,
    Storage,
    StorageError,
    locate_backup,
    open_storage,
)
from pgwarden.storage.base import InvalidLocation
from pgwarden.storage.manifest import backup_info, write_manifest

DRILL_MARK = "_pgw_drill_"
Say = Callable[[str], None]


def scratch_name(manifest: BackupManifest) -> str:
    """`<database>_pgw_drill_<random>`: named for what it is, within PostgreSQL's 63 bytes."""
    return derived_name(manifest.database_name or "backup", f"{DRILL_MARK}{secrets.token_hex(3)}")


def _open(source: str | Storage, backup_id: str | None, owner: str | None) -> tuple[Storage, BackupManifest]:
    try:
        storage = open_storage(source) if isinstance(source, str) else source
        return locate_backup(storage, backup_id, owner=owner)
    except (InvalidLocation, ObjectNotFound) as exc:
        raise BadInput(f"{exc}; pass the location of a backup or of a prefix holding backups") from exc
    except StorageError as exc:
        raise PgwardenError(f"the backups cannot be read: {exc}; nothing was drilled") from exc


def _create_schemas(scratch_url: str, manifest: BackupManifest) -> None:
    """A dump limited to tables (pg_dump -t) holds no CREATE SCHEMA: make its tables' schemas first."""
    if not (manifest.selection and manifest.selection.get("tables")):
        return
    with connect(scratch_url, autocommit=True) as conn:
        for table in manifest.per_table:
            row = conn.execute("SELECT (parse_ident(%s))[1]", [table]).fetchone()
            if row and row[0]:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(str(row[0]))))


def _mark_verified(backup: Storage, manifest: BackupManifest, restore_seconds: float) -> None:
    updated = manifest.model_copy(
        update={
            "verified": True,
            "verified_at": datetime.now(UTC),
            "verified_restore_seconds": restore_seconds,
        }
    )
    write_manifest(backup, updated)


def run_drill(
    source: str | Storage,
    server_url: str | None,
    *,
    backup_id: str | None = None,
    owner: str | None = None,
    identities: Identities = (),
    jobs: int = 1,
    progress: Say | None = None,
) -> DrillReport:
    """Drill the newest complete backup under `source` (or `backup_id`, or `owner`'s newest) on the server
    of `server_url` (libpq's PG* environment when None). BadInput when there is nothing to drill or a
    sealed backup's identity is missing (nothing created); every later failure, a corrupted dump included,
    is a Failed report: the point of a drill is to find those."""
    say = progress or (lambda _message: None)
    started, clock = datetime.now(UTC), time.monotonic()
    if jobs < 1:
        raise BadInput("--jobs must be at least 1")
    register_environment()
    url = resolve_url(server_url)
    backup, manifest = _open(source, backup_id, owner)
    check_can_open(backup, manifest, identities)
    name = scratch_name(manifest)
    report = DrillReport(
        outcome=Outcome.FAILED,
        backup=backup_info(backup, manifest),
        server=describe(with_database(url, name)),
        scratch_database=name,
        started_at=started,
    )
    say(f"drill: restoring backup {manifest.id} from {backup.uri()} into scratch database {name}")
    try:
        with scratch_database(url, name, say=say) as scratch_url:
            _create_schemas(scratch_url, manifest)
            restore_clock = time.monotonic()
            restore_manifest(scratch_url, backup, manifest, jobs=jobs, identities=identities, progress=say)
            counts, schema = restored_state(scratch_url)
            pause_point("drill-restored")
            report.restore_seconds = round(time.monotonic() - restore_clock, 3)
        report.scratch_dropped = True
    except (PgwardenError, psycopg.Error, OSError) as exc:
        if isinstance(exc, BadInput):
            raise
        report.error = ErrorInfo(message=f"the drill could not restore backup {manifest.id}: {exc}")
        return _finish(report, clock)
    report.tables, report.rows = len(counts), sum(counts.values())
    report.verification = compare_counts(
        manifest.per_table, counts, expected_schema=manifest.schema_fingerprint, actual_schema=schema
    )
    if not report.verification.matches_backup:
        report.error = ErrorInfo(
            message=f"backup {manifest.id} does not restore as recorded: {report.verification.mismatch()}"
        )
        return _finish(report, clock)
    try:
        _mark_verified(backup, manifest, report.restore_seconds or 0.0)
        report.marked_verified = True
    except StorageError as exc:
        report.marked_verified = False
        report.error = ErrorInfo(
            message=f"the restore matched, but recording it in the manifest failed: {exc}"
        )
        return _finish(report, clock)
    report.outcome = Outcome.SUCCEEDED
    if report.backup is not None:
        report.backup.verified = True
    say(f"drill: backup {manifest.id} restored in {report.restore_seconds:.1f}s and matched its manifest")
    return _finish(report, clock)


def _finish(report: DrillReport, clock: float) -> DrillReport:
    report.completed_at = datetime.now(UTC)
    report.duration_seconds = round(time.monotonic() - clock, 3)
    return report
