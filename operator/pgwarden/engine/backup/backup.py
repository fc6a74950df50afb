"""Taking a backup: pg_dump streamed through our compression and SHA-256 to storage, the manifest last.

Custom format streams `pg_dump -Fc -Z0` straight to storage: memory stays constant and nothing touches local
disk. Directory format buys parallel dump jobs at the price of local scratch space: `pg_dump -Fd -j N -Z0`
writes to a temporary directory, whose files are then stored one object each (`dump/<file>.*`), N at a time.
With recipients, every stored object is sealed with age after compression; checksums cover what is stored.
Row counts and the dump come from one exported snapshot, so the manifest describes exactly what was dumped.

The pipeline, top to bottom in `take_backup`: check the options (`options.py`), preflight (server, pg_dump,
storage), dump at a snapshot while counting its rows, describe it in a manifest, let the caller's verifier
restore it, write the manifest (the backup exists from then on), copy it further.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import conninfo

from pgwarden import __version__
from pgwarden.api.encryption import Sealing
from pgwarden.api.reports import BackupReport, ErrorInfo, Outcome, RestoreComparison
from pgwarden.engine.backup.compression import compressor
from pgwarden.engine.backup.copies import check_copy_targets, make_copies, open_copy_targets
from pgwarden.engine.backup.dump import BackupFailed, dump_custom, dump_directory
from pgwarden.engine.backup.dump_files import DirectoryUpload
from pgwarden.engine.backup.dump_sink import DumpSink
from pgwarden.engine.backup.encryption import public_keys
from pgwarden.engine.backup.locks import lock_wait_message, with_lock_timeout
from pgwarden.engine.backup.options import BackupOptions, CheckedOptions, Progress, check_options
from pgwarden.engine.backup.selection import dumped_tables
from pgwarden.engine.pause_points import pause_point as _pause_point
from pgwarden.engine.postgres.announce import announced
from pgwarden.engine.postgres.connect import connect, describe, resolve_url
from pgwarden.engine.postgres.counts import BACKGROUND_COUNT_CONCURRENCY, count_rows
from pgwarden.engine.postgres.inspect import database_size, take_snapshot
from pgwarden.engine.postgres.schema_diff import fingerprint
from pgwarden.engine.postgres.tools import PgTool, find_tool, server_version_text
from pgwarden.errors import PgwardenError
from pgwarden.redact import redact, register_environment
from pgwarden.storage import BackupManifest, Storage, StorageError, open_given
from pgwarden.storage.base import ObjectWriter
from pgwarden.storage.manifest import (
    MANIFEST,
    StoredFile,
    backup_info,
    files_digest,
    new_backup_id,
    write_manifest,
)
from pgwarden.threads import start_helper


@dataclass(frozen=True)
class _Server:
    """What the preflight learnt: the server, its size, and a pg_dump new enough for it."""

    version: str
    estimated_bytes: int | None
    dbname: str
    tool: PgTool


@dataclass
class _Target:
    """Where this backup's objects go, and how to take back whatever reached storage when it fails."""

    backup_id: str
    backup: Storage
    dump_file: str
    upload: DirectoryUpload
    writer: ObjectWriter | None
    sink: DumpSink | None
    # What sits at its final key: named before it is committed, so every way out short of a written
    # manifest (a failure, SIGTERM however late it lands) deletes it again and no unlisted dump is left.
    stored_keys: list[str] = field(default_factory=list)
    dump_started: float = field(default_factory=time.monotonic)

    def abort(self) -> None:
        if self.sink is not None and self.writer is not None:
            self.sink.abort()
            self.writer.abort()
        _delete_stored(self.backup, [*self.upload.committed, *self.stored_keys])


@dataclass(frozen=True)
class _Dumped:
    """The dump, stored at its final keys, and the rows counted at its snapshot."""

    counts: dict[str, int]
    schema: str | None
    outside_schemas: set[str]
    files: list[StoredFile] | None
    sha256: str
    raw_bytes: int
    stored_bytes: int
    seconds: float


def take_backup(
    database_url: str | None,
    to: str | Storage,
    options: BackupOptions | None = None,
    progress: Progress | None = None,
) -> BackupReport:
    """Back up the database to `to` (a prefix: the backup goes to `<prefix>/<id>/`).

    Raises BadInput (nothing started) or BackupFailed (nothing left listed); returns outcome Failed only
    when the verifier found the restored copy differs, in which case the dump is deleted and not listed, or
    when a copy failed (the backup itself is kept)."""
    options = options or BackupOptions()
    say = progress or (lambda _message: None)
    checked = check_options(options)
    url = resolve_url(database_url)
    register_environment()
    storage = open_given(to)
    started, clock = datetime.now(UTC), time.monotonic()
    copy_targets = open_copy_targets(options.copy_to)
    server = _preflight(url, storage, copy_targets)
    _pause_point("after-preflight")

    target = _target(storage, new_backup_id(started), options, checked, server)
    say(
        f"backing up {describe(url)} (about {server.estimated_bytes or 0} bytes) to {target.backup.uri()} "
        f"with {server.tool.name} {server.tool.version}"
        + (f", sealed with age to {len(checked.recipients)} recipient(s)" if checked.recipients else "")
    )
    try:
        # Announced while it reads the database, so a migration waits for it instead of queueing its DDL
        # behind the dump's locks (engine.postgres.announce); the verification reads only its own copy.
        with announced(url, f"backup {target.backup_id}"):
            dumped = _dump(url, target, options, checked, server)
        manifest = _manifest(url, target, options, checked, server, dumped, started, clock)
        verification = None
        if options.verify is not None:
            verification = options.verify(
                url,
                target.backup,
                manifest,
                jobs=options.jobs,
                schemas=dumped.outside_schemas,
                identities=options.identities,
                progress=say,
            )
            if not verification.matches_backup:
                _delete_stored(target.backup, target.stored_keys)
                return _report(manifest, target.backup, started, clock, verification, failed=True)
            manifest = _verified(manifest, clock)
        _write_manifest(target.backup, manifest)
    except BaseException:
        _delete_stored(target.backup, [*target.stored_keys, MANIFEST])
        raise
    say(
        f"backup {manifest.id} complete: {manifest.size_bytes} bytes, {manifest.tables} tables, {manifest.rows} rows"
    )
    copies, copy_failure = make_copies(target.backup, manifest, copy_targets, say)
    report = _report(manifest, target.backup, started, clock, verification, failed=False)
    report.throughput_bytes_per_second = (
        round(dumped.raw_bytes / dumped.seconds, 1) if dumped.seconds > 0 else None
    )
    if copies:
        report.copies = copies
    if copy_failure:
        report.outcome, report.error = Outcome.FAILED, ErrorInfo(message=copy_failure)
    return report


# -- the steps, in the order take_backup takes them


def _preflight(url: str, storage: Storage, copy_targets: list[Storage]) -> _Server:
    """The server, a pg_dump new enough for it, and storage we can write to (the primary and every copy)."""
    with connect(url) as conn:
        version = server_version_text(int(conn.info.server_version))
        estimated = database_size(conn)
        dbname = conn.info.dbname
    tool = find_tool(
        "pg_dump", min_major=int(version.split(".")[0]), purpose=f"the server (PostgreSQL {version})"
    )
    try:
        storage.check_writable()
    except StorageError as exc:
        raise BackupFailed(f"storage is not writable: {exc}") from exc
    try:
        check_copy_targets(storage, copy_targets)
    except StorageError as exc:
        raise BackupFailed(f"a --copy-to storage is not writable: {exc}; nothing was backed up") from exc
    return _Server(version, estimated, dbname, tool)


def _target(
    storage: Storage, backup_id: str, options: BackupOptions, checked: CheckedOptions, server: _Server
) -> _Target:
    backup = storage.child(backup_id)
    sealed = ".age" if checked.recipients else ""
    custom = options.format == "custom"
    dump_file = "dump.pgc" + checked.spec.suffix + sealed if custom else "dump"
    upload = DirectoryUpload(
        backup, dump_file, checked.spec, checked.recipients, checked.spec.suffix + sealed
    )
    writer = backup.open_writer(dump_file, size_hint=server.estimated_bytes) if custom else None
    sink = DumpSink(compressor(checked.spec), writer, checked.recipients) if writer is not None else None
    return _Target(backup_id, backup, dump_file, upload, writer, sink)


def _dump(
    url: str, target: _Target, options: BackupOptions, checked: CheckedOptions, server: _Server
) -> _Dumped:
    """pg_dump at an exported snapshot while the rows are counted at the same snapshot, stored at its
    final keys; whatever reached storage is taken back when anything fails."""
    lock_wait = options.lock_wait_timeout
    stop_counting = threading.Event()  # set when the dump fails: the counts are for nobody then
    try:
        with (
            connect(with_lock_timeout(url, lock_wait)) as conn,
            tempfile.TemporaryDirectory(prefix="pgwarden-backup-") as scratch,
        ):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snap_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot = str(snap_row[0]) if snap_row else None
            tables, outside_schemas = dumped_tables(conn, options.selection)
            schema = None if options.selection else fingerprint(take_snapshot(conn))
            counting = _CountAtSnapshot(with_lock_timeout(url, lock_wait), tables, snapshot, stop_counting)
            dump_options = [*checked.lock_options, *options.selection.pg_dump_args()]
            files = None
            if target.sink is not None:
                dump_custom(server.tool, url, snapshot, dump_options, target.sink, lock_wait=lock_wait)
            else:
                files = dump_directory(
                    server.tool,
                    url,
                    snapshot,
                    dump_options,
                    options.jobs,
                    target.upload,
                    Path(scratch),
                    lock_wait=lock_wait,
                )
            counts = counting.result(lock_wait)
            conn.rollback()
        dumped = _stored(target, counts, schema, outside_schemas, files)
        _pause_point("before-commit")
        if target.writer is not None:
            target.writer.commit()
        _pause_point("after-commit")
        return dumped
    except StorageError as exc:
        target.abort()
        raise BackupFailed(f"writing the backup failed: {exc}") from exc
    except psycopg.Error as exc:
        target.abort()
        raise lock_wait_exceeded(exc, lock_wait, "reading the database for the dump") or BackupFailed(
            f"the database failed during the backup: {redact(str(exc)).strip()}"
        ) from exc
    except PgwardenError as exc:  # reading the schema or the tables at the snapshot
        target.abort()
        explained = lock_wait_exceeded(exc, lock_wait, "reading the schema at the dump's snapshot")
        if explained is None:
            raise
        raise explained from exc
    except BaseException:
        target.abort()
        raise
    finally:
        stop_counting.set()


class _CountAtSnapshot:
    """Counts the dumped tables' rows at the dump's snapshot in a thread while pg_dump reads it, so the counts
    are exactly the dumped rows."""

    def __init__(self, url: str, tables: list[str], snapshot: str | None, stop: threading.Event) -> None:
        self.counts: dict[str, int] = {}
        self._error: list[BaseException] = []
        self._args = (url, tables, snapshot, stop)
        self._thread = start_helper(threading.Thread(target=self._count, name="count-rows", daemon=True))

    def _count(self) -> None:
        url, tables, snapshot, stop = self._args
        try:
            self.counts.update(
                count_rows(
                    url, tables, concurrency=BACKGROUND_COUNT_CONCURRENCY, snapshot_id=snapshot, stop=stop
                )
            )
        except BaseException as exc:  # handed to the dumping thread, which raises it with the context
            self._error.append(exc)

    def result(self, lock_wait: str) -> dict[str, int]:
        self._thread.join()
        if self._error:
            raise _count_error(self._error[0], lock_wait)
        return self.counts


def _stored(
    target: _Target,
    counts: dict[str, int],
    schema: str | None,
    outside_schemas: set[str],
    files: list[StoredFile] | None,
) -> _Dumped:
    """The finished dump's digest and sizes; its keys are named in `target.stored_keys` from here on."""
    if target.sink is not None:
        sha256 = target.sink.finish()
        raw_bytes, stored_bytes = target.sink.raw_bytes, target.sink.stored_bytes
    else:
        stored_files = files or []
        sha256 = files_digest(stored_files)
        raw_bytes, stored_bytes = target.upload.raw_bytes, sum(f.size_bytes for f in stored_files)
    target.stored_keys[:] = [target.dump_file] if files is None else [f.key for f in files]
    seconds = time.monotonic() - target.dump_started
    return _Dumped(counts, schema, outside_schemas, files, sha256, raw_bytes, stored_bytes, seconds)


def _manifest(
    url: str,
    target: _Target,
    options: BackupOptions,
    checked: CheckedOptions,
    server: _Server,
    dumped: _Dumped,
    started: datetime,
    clock: float,
) -> BackupManifest:
    counts = dumped.counts
    return BackupManifest(
        id=target.backup_id,
        format=options.format,
        compression=str(checked.spec),
        dump_file=target.dump_file,
        size_bytes=dumped.stored_bytes,
        sha256=dumped.sha256,
        database=describe(url),
        database_name=server.dbname,
        database_server=database_server(url),
        owner=checked.owner,
        server_version=server.version,
        pg_dump_version=server.tool.version,
        tables=len(counts),
        rows=sum(counts.values()),
        per_table={name: counts[name] for name in sorted(counts)},
        schema_fingerprint=dumped.schema,
        started_at=started,
        completed_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
        dump_seconds=round(dumped.seconds, 3),
        pgwarden_version=__version__,
        selection=dataclasses.asdict(options.selection) if options.selection else None,
        encryption=Sealing(recipients=public_keys(checked.recipients)) if checked.recipients else None,
        files=dumped.files,
    )


def _verified(manifest: BackupManifest, clock: float) -> BackupManifest:
    return manifest.model_copy(
        update={
            "verified": True,
            "verified_at": datetime.now(UTC),
            "completed_at": datetime.now(UTC),
            "duration_seconds": round(time.monotonic() - clock, 3),
        }
    )


def _write_manifest(backup: Storage, manifest: BackupManifest) -> None:
    _pause_point("before-manifest")
    try:
        write_manifest(backup, manifest)
    except StorageError as exc:
        raise BackupFailed(f"writing the manifest failed, so the backup is not complete: {exc}") from exc


# -- wording


def database_server(url: str) -> str:
    """host:port of the server a URL (or the PG* environment) names, as `describe` writes them: a label
    without credentials, equal to the one older manifests carry inside `database`."""
    params = conninfo.conninfo_to_dict(url) if url else {}
    host = str(params.get("host") or os.environ.get("PGHOST", "localhost"))
    port = str(params.get("port") or os.environ.get("PGPORT", "5432"))
    return f"{host}:{port}"


def lock_wait_exceeded(exc: BaseException, lock_wait: str, what: str) -> BackupFailed | None:
    """The failure to report when `what` gave up waiting for a table lock; None for any other error."""
    message = lock_wait_message(exc, lock_wait, what)
    return BackupFailed(message) if message else None


def _count_error(exc: BaseException, lock_wait: str) -> BackupFailed:
    what = "counting rows at the dump's snapshot"
    return lock_wait_exceeded(exc, lock_wait, what) or BackupFailed(f"{what} failed: {redact(str(exc))}")


def _delete_stored(backup: Storage, keys: list[str]) -> None:
    """Delete what a failed run stored; storage being unreachable must not hide the failure itself."""
    with contextlib.suppress(StorageError):
        backup.delete(keys)


def _report(
    manifest: BackupManifest,
    backup: Storage,
    started: datetime,
    clock: float,
    verification: RestoreComparison | None,
    *,
    failed: bool,
) -> BackupReport:
    error = None
    if failed and verification is not None:
        error = ErrorInfo(
            message=f"verification failed: {verification.mismatch()} in the restored copy; "
            "the dump was deleted and no backup was recorded"
        )
    return BackupReport(
        outcome=Outcome.FAILED if failed else Outcome.SUCCEEDED,
        database=manifest.database,
        backup=None if failed else backup_info(backup, manifest),
        format=manifest.format,
        compression=manifest.compression,
        tables=manifest.tables,
        rows=manifest.rows,
        server_version=manifest.server_version,
        pg_dump_version=manifest.pg_dump_version,
        verification=verification,
        error=error,
        encryption=manifest.encryption,
        started_at=started,
        completed_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
    )
