"""Restoring a backup: checksum verified before pg_restore runs, restored row counts compared with the manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, overload

import psycopg
from psycopg import sql

from pgwarden.api.backup import DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.api.reports import (
    ErrorInfo,
    Outcome,
    RestoreComparison,
    RestoreReport,
    RowDifference,
)
from pgwarden.api.restore import RestoreRowCounts
from pgwarden.engine.backup.locks import lock_wait_ms
from pgwarden.engine.backup.stored_dump import (
    Identities,
    RestoreFailed,
    check_can_open,
    download_verified,
    stored_objects,
    stream_object,
)
from pgwarden.engine.backup.streaming import Push
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.announce import announced
from pgwarden.engine.postgres.connect import connect, database_name, describe, resolve_url, with_database
from pgwarden.engine.postgres.counts import (
    BACKGROUND_COUNT_CONCURRENCY,
    analyze_tables,
    count_rows,
    estimate_rows,
)
from pgwarden.engine.postgres.databases import derived_name, drop, end_sessions, maintenance, rename
from pgwarden.engine.postgres.inspect import list_user_tables, take_snapshot
from pgwarden.engine.postgres.schema_diff import fingerprint
from pgwarden.engine.postgres.scratch import guarded
from pgwarden.engine.postgres.tools import (
    PgTool,
    collect_stderr,
    find_tool,
    killed_on_failure,
    major_of,
    tool_invocation,
)
from pgwarden.engine.restore.locks import LockWatch, lock_wait_message
from pgwarden.errors import BadInput, DatabaseUnavailable, PgwardenError
from pgwarden.redact import redact, register_environment
from pgwarden.storage import (
    BackupManifest,
    ObjectNotFound,
    Storage,
    StorageError,
    locate_backup,
    open_given,
)
from pgwarden.storage.manifest import backup_info
from pgwarden.threads import start_helper

log = logging.getLogger(__name__)

MAX_DIFFERENCES = 100
RESTORING_MARK = "_pgw_restoring_"  # <name>_pgw_restoring_<id>: a --create restore not yet in place

Progress = Callable[[str], None]


def compare_counts(
    expected: Mapping[str, int],
    actual: Mapping[str, int | None],
    *,
    expected_schema: str | None = None,
    actual_schema: str | None = None,
    rows: RestoreRowCounts = "exact",
) -> RestoreComparison:
    """Compare the manifest's per-table rows (and schema fingerprint) with the restored ones (pure).

    `actual` names every restored table; its rows are exact counts, estimates or None (not counted), as
    `rows` says. Only exact counts can differ from the manifest's: otherwise only a table missing on one
    side is a difference."""
    differences = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        present = table in actual
        if table in expected and present and (rows != "exact" or want == got):
            continue
        if not present:
            detail = "in the backup, missing after the restore"
        elif table not in expected:
            detail = "not in the backup (left in place by the restore)"
        else:
            detail = f"{want} rows in the backup, {got} after the restore"
        differences.append(RowDifference(table=table, expected=want, actual=got, detail=detail))
    schema_matches = None
    if expected_schema and actual_schema:
        schema_matches = expected_schema == actual_schema
    return RestoreComparison(
        matches_backup=not differences and schema_matches is not False,
        schema_matches=schema_matches,
        tables_compared=len(set(expected) | set(actual)),
        row_counts=rows,
        differences=differences[:MAX_DIFFERENCES],
        differences_total=len(differences),
    )


# -- running pg_restore

Feed = Callable[[Push], bool]


def run_pg_restore(
    tool: PgTool,
    url: str,
    options: list[str],
    *,
    source: Path | None,
    feed: Feed | None,
    lock_wait: str = DEFAULT_LOCK_WAIT_TIMEOUT,
) -> None:
    """Run pg_restore against `url`, from a file or directory (`source`) or fed on stdin by `feed` (which
    pushes the archive and returns False when pg_restore stopped reading); stop it when one of its
    sessions waits on another session's lock longer than `lock_wait` (0s: for ever)."""
    dbname_args, env = tool_invocation(url)
    command = [tool.path, *dbname_args, *options]
    if source is not None:
        command.append(str(source))
    log.debug("running %s", " ".join(command[:1] + options))
    errors: list[bytes] = []
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE if feed else subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    assert process.stderr is not None
    reader = start_helper(threading.Thread(target=collect_stderr, args=(process.stderr, errors), daemon=True))
    with killed_on_failure(process), LockWatch(url, lock_wait, process.kill) as watch:
        if feed is not None and process.stdin is not None:
            stdin = process.stdin
            try:
                feed(stdin.write)  # pg_restore stopping early: its exit status and stderr say why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    stdin.close()
        code = process.wait()
    reader.join(timeout=5)
    if watch.found is not None:
        single = "--single-transaction" in options
        raise RestoreFailed(lock_wait_message(watch.found, lock_wait, single_transaction=single))
    if code != 0:
        message = b"".join(errors[-10:]).decode(errors="replace").strip()
        raise RestoreFailed(f"pg_restore failed (exit {code}): {redact(message) or 'no message'}")


def _restore_options(*, clean: bool, jobs: int, single_transaction: bool) -> list[str]:
    options = ["--exit-on-error", "--no-password"]
    if clean:
        options += ["--clean", "--if-exists"]
    if single_transaction:
        options.append("--single-transaction")
    if jobs > 1:
        options.append(f"--jobs={jobs}")
    return options


def restore_manifest(
    url: str,
    backup: Storage,
    manifest: BackupManifest,
    *,
    clean: bool = False,
    jobs: int = 1,
    identities: Identities = (),
    workdir: Path | None = None,
    lock_wait: str = DEFAULT_LOCK_WAIT_TIMEOUT,
    progress: Progress | None = None,
) -> PgTool:
    """Restore a backup into `url`, every stored byte checked against its manifest; the pg_restore it used.
    Callers that compare the result with the manifest read it with `restored_state`.

    Custom format with one job streams from storage into pg_restore in one transaction (no local copy; a
    corrupted dump is found before pg_restore sees its end, so the transaction rolls back). Parallel jobs
    and the directory format need local files: those are fetched and checked first, then restored."""
    say = progress or (lambda _message: None)
    tool = restore_tool(manifest)
    where = backup.uri(manifest.dump_file)
    if manifest.format != "directory" and jobs == 1:
        say(
            f"downloading and verifying {where} ({manifest.size_bytes} bytes) into {tool.name} {tool.version}"
        )
        say(f"restoring with {tool.name} {tool.version} in one transaction")
        options = _restore_options(clean=clean, jobs=1, single_transaction=True)
        stored = stored_objects(manifest)[0]
        run_pg_restore(
            tool,
            url,
            ["--format=custom", *options],
            source=None,
            feed=lambda push: stream_object(backup, manifest, stored, identities, push),
            lock_wait=lock_wait,
        )
        return tool
    with tempfile.TemporaryDirectory(prefix="pgwarden-restore-", dir=workdir) as tmp:
        local = Path(tmp) / "dump"
        say(f"downloading and verifying {where} ({manifest.size_bytes} bytes), {jobs} at a time")
        download_verified(backup, manifest, local, identities, jobs=jobs)
        restore_downloaded(
            url, tool, manifest, local, clean=clean, jobs=jobs, lock_wait=lock_wait, progress=say
        )
    return tool


def restore_tool(manifest: BackupManifest) -> PgTool:
    """A pg_restore at least as new as the pg_dump that wrote the archive (ToolTooOld/ToolMissing otherwise)."""
    return find_tool(
        "pg_restore",
        min_major=major_of(manifest.pg_dump_version),
        purpose=f"the archive (written by pg_dump {manifest.pg_dump_version})",
    )


def restore_downloaded(
    url: str,
    tool: PgTool,
    manifest: BackupManifest,
    local: Path,
    *,
    clean: bool = False,
    jobs: int = 1,
    lock_wait: str = DEFAULT_LOCK_WAIT_TIMEOUT,
    progress: Progress | None = None,
) -> None:
    """pg_restore a dump `download_verified` made restorable at `local` (an archive or a directory) into `url`.

    One job restores in one transaction (all or nothing); parallel jobs restore with --jobs, not atomic."""
    say = progress or (lambda _message: None)
    fmt = "directory" if manifest.format == "directory" else "custom"
    single = jobs == 1
    say(
        f"restoring with {tool.name} {tool.version}" + (" in one transaction" if single else f", {jobs} jobs")
    )
    options = _restore_options(clean=clean, jobs=jobs, single_transaction=single)
    run_pg_restore(tool, url, [f"--format={fmt}", *options], source=local, feed=None, lock_wait=lock_wait)


@overload
def restored_state(
    url: str, row_counts: Literal["exact", "estimate"] = "exact"
) -> tuple[dict[str, int], str]: ...
@overload
def restored_state(url: str, row_counts: RestoreRowCounts) -> tuple[Mapping[str, int | None], str]: ...
def restored_state(url: str, row_counts: RestoreRowCounts = "exact") -> tuple[Mapping[str, int | None], str]:
    """Rows per user table (exact counts, estimates after an ANALYZE, or None: not counted), and the schema
    fingerprint, of a database."""
    with connect(url) as conn:
        tables = list_user_tables(conn)
        schema = fingerprint(take_snapshot(conn))
        if row_counts == "estimate" and tables:
            analyze_tables(conn, tables)  # restored tables have no statistics yet
            return estimate_rows(conn, tables), schema
    if row_counts == "none":
        return dict.fromkeys(tables), schema
    return count_rows(url, tables, concurrency=BACKGROUND_COUNT_CONCURRENCY), schema


# -- the command


def _maintenance_url(url: str) -> str:
    return with_database(url, "postgres")


def terminate_connections(url: str, dbname: str) -> int:
    """End every other session on `dbname` (a restore needs the tables it replaces); returns how many."""
    with connect(_maintenance_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _database_exists(url: str, dbname: str) -> bool:
    with connect(_maintenance_url(url), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is not None


def create_database(url: str, dbname: str) -> None:
    with connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(url: str, dbname: str) -> None:
    """Drop a database pgwarden created, ending sessions still on it."""
    with connect(_maintenance_url(url), autocommit=True) as conn:
        drop(conn, dbname)


def restoring_name(dbname: str) -> str:
    """The temporary database a `--create` restore goes into, named for what it is, within 63 bytes."""
    return derived_name(dbname, f"{RESTORING_MARK}{secrets.token_hex(3)}")


def put_in_place(url: str, restored: str, dbname: str) -> None:
    """Rename the restored temporary database to its final name; RestoreFailed if that name was taken
    meanwhile (the caller then drops the temporary one)."""
    with maintenance(url) as conn:
        end_sessions(conn, restored, wait_seconds=5)
        try:
            rename(conn, restored, dbname)
        except psycopg.errors.DuplicateDatabase as exc:
            raise RestoreFailed(
                f"database {dbname!r} was created by someone else while the backup was restored; the "
                "restored copy was dropped. Restore again under another name"
            ) from exc


@dataclass(frozen=True)
class RestoreOptions:
    """How a restore runs, besides the database and the backup."""

    create: bool = False
    clean: bool = False
    terminate: bool = False
    jobs: int = 1
    identities: Identities = ()
    lock_wait_timeout: str = DEFAULT_LOCK_WAIT_TIMEOUT
    row_counts: RestoreRowCounts = "exact"


@dataclass(frozen=True)
class Restored:
    """What the restore produced, for its report."""

    tool: PgTool
    counts: Mapping[str, int | None]
    verification: RestoreComparison
    created: bool
    terminated: int | None


def restore_backup(
    database_url: str | None,
    source: str | Storage,
    *,
    backup_id: str | None = None,
    create: bool = False,
    clean: bool = False,
    terminate: bool = False,
    jobs: int = 1,
    identities: Identities = (),
    lock_wait_timeout: str = DEFAULT_LOCK_WAIT_TIMEOUT,
    progress: Progress | None = None,
    row_counts: RestoreRowCounts = "exact",
) -> RestoreReport:
    """Restore the backup at `source` (a backup folder, or the newest complete one under a prefix, or
    `backup_id` under it) into the database; raises BadInput/RestoreFailed when nothing could be restored,
    returns outcome Failed when the restore ran but the restored rows differ from the backup.
    A sealed backup needs one of its recipients' `identities`: without, IdentityRefused before anything
    is created or changed. pg_restore is stopped when it waits longer than `lock_wait_timeout` for another
    session's lock. `row_counts` (exact, estimate, none) says how the restored rows are counted; outside
    exact only tables missing or extra (and the schema fingerprint) are differences."""
    say = progress or (lambda _message: None)
    options = RestoreOptions(create, clean, terminate, jobs, identities, lock_wait_timeout, row_counts)
    started, clock = datetime.now(UTC), time.monotonic()
    url = resolve_url(database_url)
    register_environment()
    if jobs < 1:
        raise BadInput("--jobs must be at least 1")
    lock_wait_ms(lock_wait_timeout)  # BadInput before anything is touched
    storage = open_given(source)
    try:
        backup, manifest = locate_backup(storage, backup_id)
    except ObjectNotFound as exc:
        raise BadInput(f"{exc}; pass the location of a backup or of a prefix holding backups") from exc
    except StorageError as exc:
        raise RestoreFailed(str(exc)) from exc
    dbname = database_name(url)
    check_can_open(backup, manifest, identities)
    say(f"restoring backup {manifest.id} from {backup.uri()} into {describe(url)}")
    _check_target(url, dbname, options)
    # Announced for the whole restore, so a migration of the database waits for it (engine.postgres.announce).
    with announced(url, f"restore {manifest.id}"):
        if create:
            restored = _restore_created(url, dbname, backup, manifest, options, say)
        else:
            restored = _restore_into(url, url, dbname, backup, manifest, options, say)
    return _report(url, backup, manifest, restored, options, started, clock)


def _check_target(url: str, dbname: str, options: RestoreOptions) -> None:
    """BadInput before anything is created or changed, when the target is not what the options need."""
    if options.create:
        if _database_exists(url, dbname):
            raise BadInput(
                f"database {dbname!r} already exists; drop --create to restore into it (with --clean to "
                "replace its objects), or name a new database"
            )
        return
    try:
        with connect(url) as conn:
            existing = list_user_tables(conn)
    except DatabaseUnavailable as exc:
        if not _database_exists(url, dbname):
            raise BadInput(f"database {dbname!r} does not exist; pass --create to create it") from exc
        raise
    if existing and not options.clean:
        raise BadInput(
            f"database {dbname!r} already has {len(existing)} table(s); pass --clean to replace the "
            "objects in the backup, or --create with a new database name"
        )


def _restore_created(
    url: str,
    dbname: str,
    backup: Storage,
    manifest: BackupManifest,
    options: RestoreOptions,
    say: Progress,
) -> Restored:
    """--create restores into a temporary database and renames it only once the counts matched: a run
    killed half-way leaves at most that clearly named database, never one under the name asked for, and
    its guardian (or the next run's sweep, when the whole Pod died) drops it."""
    into = restoring_name(dbname)
    say(f"restoring into {into}; it becomes {dbname} once its rows match the backup")
    created = False
    with guarded(url, into):
        create_database(url, into)
        try:
            restored = _restore_into(url, with_database(url, into), into, backup, manifest, options, say)
            if restored.verification.matches_backup:
                pause_point("restore-created")
                put_in_place(url, into, dbname)
                created = True
        finally:
            if not created:
                with contextlib.suppress(PgwardenError, psycopg.Error):
                    drop_database(url, into)
    return dataclasses.replace(restored, created=created)


def _restore_into(
    url: str,
    into_url: str,
    into: str,
    backup: Storage,
    manifest: BackupManifest,
    options: RestoreOptions,
    say: Progress,
) -> Restored:
    """pg_restore into `into_url`, then count what it holds and compare with the manifest."""
    terminated = terminate_connections(url, into) if options.terminate else None
    tool = restore_manifest(
        into_url,
        backup,
        manifest,
        clean=options.clean,
        jobs=options.jobs,
        identities=options.identities,
        lock_wait=options.lock_wait_timeout,
        progress=say,
    )
    counts, schema = restored_state(into_url, options.row_counts)
    verification = compare_counts(
        manifest.per_table,
        counts,
        expected_schema=manifest.schema_fingerprint,
        actual_schema=schema,
        rows=options.row_counts,
    )
    return Restored(tool, counts, verification, created=False, terminated=terminated)


def _report(
    url: str,
    backup: Storage,
    manifest: BackupManifest,
    restored: Restored,
    options: RestoreOptions,
    started: datetime,
    clock: float,
) -> RestoreReport:
    verification = restored.verification
    dbname = database_name(url)
    not_created = (
        f"; the restored copy was dropped and database {dbname!r} was not created" if options.create else ""
    )
    counts = restored.counts
    return RestoreReport(
        outcome=Outcome.SUCCEEDED if verification.matches_backup else Outcome.FAILED,
        database=describe(url),
        restored_from=backup.uri(),
        backup=backup_info(backup, manifest),
        created_database=restored.created or None,
        terminated_connections=restored.terminated,
        tables=len(counts),
        rows=None if options.row_counts == "none" else sum(rows or 0 for rows in counts.values()),
        verification=verification,
        error=None
        if verification.matches_backup
        else ErrorInfo(
            message=f"the restored database differs from backup {manifest.id}: {verification.mismatch()}"
            + not_created
        ),
        pg_restore_version=restored.tool.version,
        started_at=started,
        completed_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
    )
