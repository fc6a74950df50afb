"""Taking a backup: pg_dump streamed through our compression and SHA-256 to storage, the manifest last.

Custom format streams `pg_dump -Fc -Z0` straight to storage: memory stays constant and nothing touches local
disk. Directory format buys parallel dump jobs at the price of local scratch space: `pg_dump -Fd -j N -Z0`
writes to a temporary directory, whose files are then stored one object each (`dump/<file>.*`), N at a time.
With recipients, every stored object is sealed with age after compression; checksums cover what is stored.
Row counts and the dump come from one exported snapshot, so the manifest describes exactly what was dumped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from typing import IO, cast

import psycopg
from psycopg import conninfo, sql

from pgwarden import __version__
from pgwarden.api.backup import DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.api.encryption import Sealing
from pgwarden.api.reports import BackupReport, ErrorInfo, Outcome, RestoreComparison
from pgwarden.engine.backup.compression import (
    DEFAULT_COMPRESSION,
    CompressionSpec,
    compressor,
    parse_compression,
)
from pgwarden.engine.backup.copies import check_copy_targets, make_copies, open_copy_targets
from pgwarden.engine.backup.dump_files import DirectoryUpload
from pgwarden.engine.backup.dump_sink import DumpSink
from pgwarden.engine.backup.encryption import parse_recipients, public_keys
from pgwarden.engine.backup.locks import (
    lock_wait_failure,
    lock_wait_message,
    lock_wait_option,
    with_lock_timeout,
)
from pgwarden.engine.backup.stored_dump import Identities
from pgwarden.engine.backup.streaming import CHUNK
from pgwarden.engine.pause_points import pause_point as _pause_point
from pgwarden.engine.postgres.connect import connect, describe, resolve_url
from pgwarden.engine.postgres.counts import count_rows
from pgwarden.engine.postgres.inspect import database_size, list_user_tables, take_snapshot
from pgwarden.engine.postgres.schema_diff import fingerprint, qualified_name
from pgwarden.engine.postgres.scratch import VERIFY_PREFIX, scratch_database
from pgwarden.engine.postgres.tools import (
    PgTool,
    collect_stderr,
    find_tool,
    server_version_text,
    tool_invocation,
)
from pgwarden.engine.restore.restore import (
    COUNT_CONCURRENCY,
    backup_info,
    compare_counts,
    mismatch,
    register_storage_secrets,
    restore_manifest,
    restored_state,
)
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import redact
from pgwarden.storage import BackupManifest, Storage, StorageError, open_storage
from pgwarden.storage.base import InvalidLocation
from pgwarden.storage.manifest import MANIFEST, StoredFile, files_digest, new_backup_id, write_manifest
from pgwarden.threads import start_helper

FORMATS = ("custom", "directory")
PIPE_SIZE = 1024 * 1024

Progress = Callable[[str], None]


class BackupFailed(PgwardenError):
    """The backup did not complete; nothing was left under its name (the upload was aborted)."""


def _dump_error(tool: PgTool, code: int, errors: list[bytes], lock_wait: str | None) -> BackupFailed:
    message = b"".join(errors[-10:]).decode(errors="replace").strip()
    explained = lock_wait_failure(message, lock_wait) if lock_wait else None
    return BackupFailed(explained or f"{tool.name} failed (exit {code}): {redact(message) or 'no message'}")


def _widen_pipe(stream: IO[bytes]) -> None:
    # A 1 MiB pipe lets pg_dump run ahead while we compress (Linux only; harmless elsewhere).
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), 1031, PIPE_SIZE)  # F_SETPIPE_SZ


def dump_custom(
    tool: PgTool,
    url: str,
    snapshot: str | None,
    options: list[str],
    sink: DumpSink,
    *,
    lock_wait: str | None = None,
) -> None:
    """Stream `pg_dump -Fc -Z0` into the sink; `lock_wait` is the timeout in `options`, for the message."""
    dbname_args, env = tool_invocation(url)
    command = [tool.path, *dbname_args, "--format=custom", "--compress=0", "--no-password", *options]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    errors: list[bytes] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    _widen_pipe(process.stdout)
    reader = start_helper(threading.Thread(target=collect_stderr, args=(process.stderr, errors), daemon=True))
    paused = False
    try:
        stdout = cast(BufferedReader, process.stdout)
        while chunk := stdout.read1(CHUNK):
            sink.write(chunk)
            if not paused and sink.stored_bytes > 20 * 1024 * 1024:
                paused = True
                _pause_point("mid-stream")
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    reader.join(timeout=5)
    if code != 0:
        raise _dump_error(tool, code, errors, lock_wait)


def dump_directory(
    tool: PgTool,
    url: str,
    snapshot: str | None,
    options: list[str],
    jobs: int,
    upload: DirectoryUpload,
    scratch: Path,
    *,
    lock_wait: str | None = None,
) -> list[StoredFile]:
    """Run `pg_dump -Fd -j N -Z0` into scratch space, then store its files one object each, N at a time."""
    dbname_args, env = tool_invocation(url)
    target = scratch / "dump"
    command = [
        tool.path,
        *dbname_args,
        "--format=directory",
        "--compress=0",
        f"--jobs={jobs}",
        "--no-password",
        f"--file={target}",
        *options,
    ]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
    if done.returncode != 0:
        raise _dump_error(tool, done.returncode, done.stderr.splitlines(keepends=True), lock_wait)
    return upload.run(target, jobs)


# -- which tables a dump holds: pg_dump's -n/-N/-t/-T rules, so the counts cover exactly the dumped tables


@dataclass(frozen=True)
class DumpSelection:
    """Schemas and tables to include or exclude, as pg_dump patterns (`public`, `audit_*`, `shop.orders`)."""

    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.schemas or self.exclude_schemas or self.tables or self.exclude_tables)

    def pg_dump_args(self) -> list[str]:
        return (
            [f"--schema={p}" for p in self.schemas]
            + [f"--exclude-schema={p}" for p in self.exclude_schemas]
            + [f"--table={p}" for p in self.tables]
            + [f"--exclude-table={p}" for p in self.exclude_tables]
        )


def pattern_parts(pattern: str) -> list[str]:
    """A pg_dump name pattern as anchored regexes, one per dot-separated part (as psql's `\\d` reads them):
    unquoted letters fold to lower case, `*` and `?` are wildcards, double quotes keep text literal."""
    parts: list[list[str]] = [[]]
    quoted, i = False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if quoted and pattern[i + 1 : i + 2] == '"':
                parts[-1].append('"')
                i += 2
                continue
            quoted = not quoted
        elif not quoted and ch == ".":
            parts.append([])
        elif not quoted and ch == "*":
            parts[-1].append(".*")
        elif not quoted and ch == "?":
            parts[-1].append(".")
        else:
            parts[-1].append(re.escape(ch if quoted else ch.lower()))
        i += 1
    return [f"^(?:{''.join(part)})$" for part in parts]


def _matches(pattern: str, schema: str, name: str | None, visible: bool) -> bool:
    parts = pattern_parts(pattern)
    if name is None:  # a schema pattern: the last part names the schema ([db.]schema)
        return re.match(parts[-1], schema) is not None
    if len(parts) == 1:  # an unqualified table pattern matches tables visible on the search_path
        return visible and re.match(parts[0], name) is not None
    return re.match(parts[-2], schema) is not None and re.match(parts[-1], name) is not None


def select_tables(tables: list[tuple[str, str, bool]], selection: DumpSelection) -> list[tuple[str, str]]:
    """The (schema, name) of the tables pg_dump dumps, from (schema, name, visible on search_path).

    pg_dump's rules: with -t only matching tables (-n/-N then have no effect); otherwise tables in schemas
    matching -n (all schemas without -n) and not -N; -T always excludes. Partitions are counted through
    their parent, so select a partitioned table together with its partitions (`events*`), as pg_dump
    matches each relation on its own."""
    chosen = []
    for schema, name, visible in tables:
        if selection.tables:
            keep = any(_matches(p, schema, name, visible) for p in selection.tables)
        else:
            keep = not selection.schemas or any(_matches(p, schema, None, True) for p in selection.schemas)
            keep = keep and not any(_matches(p, schema, None, True) for p in selection.exclude_schemas)
        if keep and not any(_matches(p, schema, name, visible) for p in selection.exclude_tables):
            chosen.append((schema, name))
    return chosen


_TABLES_WITH_VISIBILITY = """
SELECT n.nspname, c.relname, pg_table_is_visible(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


def dumped_tables(
    conn: psycopg.Connection[tuple[object, ...]], selection: DumpSelection
) -> tuple[list[str], set[str]]:
    """The user's tables (as `list_user_tables` names them) that a dump with `selection` contains, and
    the schemas they live in when the dump itself leaves schemas out (pg_dump -t does)."""
    tables = list_user_tables(conn)
    if not selection:
        return tables, set()
    rows = conn.execute(_TABLES_WITH_VISIBILITY).fetchall()
    chosen = {
        qualified_name(str(s), str(n))
        for s, n in select_tables([(str(s), str(n), bool(v)) for s, n, v in rows], selection)
    }
    schemas = (
        {str(s) for s, n, v in rows if qualified_name(str(s), str(n)) in chosen}
        if selection.tables
        else set()
    )
    return [table for table in tables if table in chosen], schemas


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
        raise BadInput(str(exc)) from None


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


def _open_target(to: str | Storage) -> Storage:
    if not isinstance(to, str):
        return to
    try:
        return open_storage(to)
    except InvalidLocation as exc:
        raise BadInput(str(exc)) from None


def verify_backup(
    url: str,
    backup: Storage,
    manifest: BackupManifest,
    *,
    jobs: int,
    schemas: set[str] | None = None,
    identities: Identities = (),
    progress: Progress,
) -> RestoreComparison:
    """Restore into a scratch database on the same server, compare counts, and drop it again.
    `schemas` are created first: a dump limited to tables (pg_dump -t) holds no CREATE SCHEMA."""
    scratch = f"{VERIFY_PREFIX}{manifest.id.replace('-', '_').lower()}"
    progress(f"verifying: restoring into scratch database {scratch}")
    # Dropped however the verification ends, by its guardian if this process is killed (engine.postgres.scratch).
    with scratch_database(url, scratch, say=progress) as scratch_url:
        if schemas:
            with connect(scratch_url, autocommit=True) as conn:
                for name in sorted(schemas):
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))
        restore_manifest(scratch_url, backup, manifest, jobs=jobs, identities=identities, progress=progress)
        counts, schema = restored_state(scratch_url)
    return compare_counts(
        manifest.per_table, counts, expected_schema=manifest.schema_fingerprint, actual_schema=schema
    )


def take_backup(
    database_url: str | None,
    to: str | Storage,
    *,
    format: str = "custom",
    compression: CompressionSpec | str = DEFAULT_COMPRESSION,
    jobs: int = 1,
    verify: bool = False,
    selection: DumpSelection | None = None,
    owner: str | None = None,
    encrypt_to: Sequence[str] = (),
    identities: Identities = (),
    copy_to: Sequence[str | Storage] = (),
    lock_wait_timeout: str = DEFAULT_LOCK_WAIT_TIMEOUT,
    progress: Progress | None = None,
) -> BackupReport:
    """Back up the database to `to` (a prefix: the backup goes to `<prefix>/<id>/`).

    Raises BadInput (nothing started) or BackupFailed (nothing left listed); returns outcome Failed only
    when `verify` found the restored copy differs, in which case the dump is deleted and not listed.
    With a `selection`, only those tables are dumped and counted (and no schema fingerprint is recorded:
    it describes whole databases). The manifest records the database and `owner` (the resource that
    made the backup, or a label; None: the database owns it), which retention and `latest` go by.
    With `encrypt_to` (age public keys) every stored byte is sealed to them; `verify` then needs one of
    their `identities`. Once complete, the backup is copied to each `copy_to` storage and verified there
    (outcome Failed when a copy failed; the backup itself is kept). pg_dump and the counts wait at most
    `lock_wait_timeout` for a table lock."""
    say = progress or (lambda _message: None)
    selection = selection or DumpSelection()
    spec = _parse_inputs(format, compression, jobs)
    owner = _parse_owner(owner)
    recipients = parse_recipients(encrypt_to)
    if verify and recipients and not identities:
        raise BadInput(
            "--verify of an encrypted backup restores it, which needs the identity of one of its recipients: "
            "pass --identity FILE (the age identity file), or leave out --verify"
        )
    lock_options = lock_wait_option(lock_wait_timeout)
    url = resolve_url(database_url)
    counting_url = with_lock_timeout(url, lock_wait_timeout)
    register_storage_secrets()
    storage = _open_target(to)
    started, clock = datetime.now(UTC), time.monotonic()

    # Preflight: the server, a pg_dump new enough for it, and storage we can write to.
    with connect(url) as conn:
        server_version = server_version_text(int(conn.info.server_version))
        estimated = database_size(conn)
        dbname = conn.info.dbname
    tool = find_tool(
        "pg_dump",
        min_major=int(server_version.split(".")[0]),
        purpose=f"the server (PostgreSQL {server_version})",
    )
    copy_targets = open_copy_targets(copy_to)
    try:
        storage.check_writable()
    except StorageError as exc:
        raise BackupFailed(f"storage is not writable: {exc}") from None
    try:
        check_copy_targets(storage, copy_targets)
    except StorageError as exc:
        raise BackupFailed(f"a --copy-to storage is not writable: {exc}; nothing was backed up") from None
    _pause_point("after-preflight")

    backup_id = new_backup_id(started)
    backup = storage.child(backup_id)
    sealed = ".age" if recipients else ""
    dump_file = "dump.pgc" + spec.suffix + sealed if format == "custom" else "dump"
    say(
        f"backing up {describe(url)} (about {estimated or 0} bytes) to {backup.uri()} with {tool.name} {tool.version}"
        + (f", sealed with age to {len(recipients)} recipient(s)" if recipients else "")
    )

    counts: dict[str, int] = {}
    schema: str | None = None
    outside_schemas: set[str] = set()
    files: list[StoredFile] | None = None
    upload = DirectoryUpload(backup, dump_file, spec, recipients, spec.suffix + sealed)
    writer = backup.open_writer(dump_file, size_hint=estimated) if format == "custom" else None
    sink = DumpSink(compressor(spec), writer, recipients) if writer is not None else None
    dump_started = time.monotonic()
    stop_counting = threading.Event()  # set when the dump fails: the counts are for nobody then

    # What sits at its final key: named before it is committed, so every way out short of a written manifest
    # (a failure, SIGTERM however late it lands) deletes it again and no unlisted dump is left.
    stored_keys: list[str] = []

    def abort_stored() -> None:
        if sink is not None and writer is not None:
            sink.abort()
            writer.abort()
        _delete_stored(backup, [*upload.committed, *stored_keys])

    try:
        try:
            with (
                connect(counting_url) as conn,
                tempfile.TemporaryDirectory(prefix="pgwarden-backup-") as scratch,
            ):
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                snap_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                snapshot = str(snap_row[0]) if snap_row else None
                tables, outside_schemas = dumped_tables(conn, selection)
                schema = None if selection else fingerprint(take_snapshot(conn))

                # Count at the snapshot while pg_dump reads it: the counts are exactly the dumped rows.
                count_error: list[BaseException] = []

                def count_in_snapshot() -> None:
                    try:
                        counts.update(
                            count_rows(
                                counting_url,
                                tables,
                                concurrency=COUNT_CONCURRENCY,
                                snapshot_id=snapshot,
                                stop=stop_counting,
                            )
                        )
                    except BaseException as exc:
                        count_error.append(exc)

                counter = start_helper(
                    threading.Thread(target=count_in_snapshot, name="count-rows", daemon=True)
                )
                options = [*lock_options, *selection.pg_dump_args()]
                if sink is not None:
                    dump_custom(tool, url, snapshot, options, sink, lock_wait=lock_wait_timeout)
                else:
                    files = dump_directory(
                        tool, url, snapshot, options, jobs, upload, Path(scratch), lock_wait=lock_wait_timeout
                    )
                counter.join()
                if count_error:
                    raise _count_error(count_error[0], lock_wait_timeout)
                conn.rollback()
            if sink is not None and writer is not None:
                sha256 = sink.finish()
                raw_bytes, stored_bytes = sink.raw_bytes, sink.stored_bytes
            else:
                stored_files = files or []
                sha256 = files_digest(stored_files)
                raw_bytes, stored_bytes = upload.raw_bytes, sum(f.size_bytes for f in stored_files)
            dump_seconds = time.monotonic() - dump_started
            stored_keys[:] = [dump_file] if files is None else [f.key for f in files]
            _pause_point("before-commit")
            if writer is not None:
                writer.commit()
            _pause_point("after-commit")
        except StorageError as exc:
            abort_stored()
            raise BackupFailed(f"writing the backup failed: {exc}") from None
        except psycopg.Error as exc:
            abort_stored()
            raise lock_wait_exceeded(
                exc, lock_wait_timeout, "reading the database for the dump"
            ) or BackupFailed(f"the database failed during the backup: {redact(str(exc)).strip()}") from None
        except PgwardenError as exc:  # reading the schema or the tables at the snapshot
            abort_stored()
            explained = lock_wait_exceeded(
                exc, lock_wait_timeout, "reading the schema at the dump's snapshot"
            )
            if explained is None:
                raise
            raise explained from None
        except BaseException:
            abort_stored()
            raise
        finally:
            stop_counting.set()

        # From here the dump sits at its final key: every way out short of a written manifest (a failed or
        # mismatching verification, a storage error, SIGTERM) deletes it again, so no unlisted dump is left.
        completed = datetime.now(UTC)
        manifest = BackupManifest(
            id=backup_id,
            format=format,
            compression=str(spec),
            dump_file=dump_file,
            size_bytes=stored_bytes,
            sha256=sha256,
            database=describe(url),
            database_name=dbname,
            database_server=database_server(url),
            owner=owner,
            server_version=server_version,
            pg_dump_version=tool.version,
            tables=len(counts),
            rows=sum(counts.values()),
            per_table={name: counts[name] for name in sorted(counts)},
            schema_fingerprint=schema,
            started_at=started,
            completed_at=completed,
            duration_seconds=round(time.monotonic() - clock, 3),
            dump_seconds=round(dump_seconds, 3),
            pgwarden_version=__version__,
            selection=dataclasses.asdict(selection) if selection else None,
            encryption=Sealing(recipients=public_keys(recipients)) if recipients else None,
            files=files,
        )
        verification = None
        if verify:
            verification = verify_backup(
                url, backup, manifest, jobs=jobs, schemas=outside_schemas, identities=identities, progress=say
            )
            if not verification.matches_backup:
                _delete_stored(backup, stored_keys)
                return _report(manifest, backup, started, clock, verification, failed=True)
            manifest = manifest.model_copy(
                update={
                    "verified": True,
                    "verified_at": datetime.now(UTC),
                    "completed_at": datetime.now(UTC),
                    "duration_seconds": round(time.monotonic() - clock, 3),
                }
            )
        _pause_point("before-manifest")
        try:
            write_manifest(backup, manifest)
        except StorageError as exc:
            raise BackupFailed(f"writing the manifest failed, so the backup is not complete: {exc}") from None
    except BaseException:
        _delete_stored(backup, [*stored_keys, MANIFEST])
        raise
    say(
        f"backup {backup_id} complete: {manifest.size_bytes} bytes, {manifest.tables} tables, {manifest.rows} rows"
    )
    copies, copy_failure = make_copies(backup, manifest, copy_targets, say)
    report = _report(manifest, backup, started, clock, verification, failed=False)
    report.throughput_bytes_per_second = round(raw_bytes / dump_seconds, 1) if dump_seconds > 0 else None
    if copies:
        report.copies = copies
    if copy_failure:
        report.outcome, report.error = Outcome.FAILED, ErrorInfo(message=copy_failure)
    return report


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
            message=f"verification failed: {mismatch(verification)} in the restored copy; "
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
