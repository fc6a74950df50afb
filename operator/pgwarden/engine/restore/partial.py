"""Restoring only what is named (`restore --schema/--table`, a DatabaseRestore's spec.only): those tables, or
whole schemas, with their indexes, constraints, triggers, owned sequences and data, into a database that
exists, under their own names or beside today's under a suffix; nothing else in it is touched.

The dump is fetched and checked against its manifest, its table of contents planned (selection.py), the
chosen entries and what they need restored into a scratch database on the same server, renamed there
(renaming.py), then dumped from there and restored into the target in one transaction: all or nothing.
Names the target already has are refused before it is changed. Each restored table's rows are counted and
compared with the manifest.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgwarden.api.backup import DEFAULT_LOCK_WAIT_TIMEOUT
from pgwarden.api.reports import ErrorInfo, Outcome, RestoredTable, RestoreOnly, RestoreReport
from pgwarden.engine.backup.locks import lock_wait_ms
from pgwarden.engine.backup.stored_dump import Identities, RestoreFailed, check_can_open, download_verified
from pgwarden.engine.backup.streaming import Push
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.connect import connect, database_name, describe, resolve_url
from pgwarden.engine.postgres.counts import BACKGROUND_COUNT_CONCURRENCY, count_rows
from pgwarden.engine.postgres.databases import derived_name
from pgwarden.engine.postgres.schema_diff import qualified_name
from pgwarden.engine.postgres.scratch import scratch_database
from pgwarden.engine.postgres.tools import (
    PgTool,
    collect_stderr,
    find_tool,
    server_version_text,
    tool_invocation,
)
from pgwarden.engine.restore import renaming
from pgwarden.engine.restore.restore import (
    _restore_options,
    compare_counts,
    restore_tool,
    run_pg_restore,
    terminate_connections,
)
from pgwarden.engine.restore.selection import (
    ArchivePlan,
    Selection,
    TableName,
    choose_tables,
    manifest_tables,
    parse_toc,
    plan_entries,
    with_suffix,
)
from pgwarden.errors import BadInput
from pgwarden.redact import redact, register_environment
from pgwarden.storage import BackupManifest, ObjectNotFound, Storage, StorageError, locate_backup, open_given
from pgwarden.storage.manifest import backup_info

PARTIAL_MARK = "_pgw_partial_"  # <database>_pgw_partial_<random>: the scratch database, swept if abandoned
SUFFIX = re.compile(r"^[A-Za-z0-9_$]{1,32}$")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PartialOptions:
    """What to restore and how: the selection, a suffix for the names, replace today's (clean)."""

    selection: Selection
    suffix: str | None = None
    clean: bool = False
    terminate: bool = False
    jobs: int = 1
    identities: Identities = ()
    lock_wait_timeout: str = DEFAULT_LOCK_WAIT_TIMEOUT


def selection_of(schemas: list[str], tables: list[str], suffix: str | None) -> Selection:
    """What the user named (schemas, tables, a rename suffix) as a selection; BadInput says which name or
    suffix is not one, before anything is fetched."""
    try:
        selection = Selection.parse(schemas, tables)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if suffix is not None and not SUFFIX.match(suffix):
        raise BadInput(f"rename suffix {suffix!r} must be 1 to 32 letters, digits, _ or $, e.g. _restored")
    if suffix is not None and not selection:
        raise BadInput("a rename suffix goes with --schema or --table: a whole backup is restored as it was")
    return selection


def restore_selected(
    database_url: str | None,
    source: str | Storage,
    options: PartialOptions,
    *,
    backup_id: str | None = None,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore the chosen tables and schemas of a backup into the database; BadInput (nothing changed) when
    a name is unknown, ambiguous or already taken there, RestoreFailed when the restore failed (rolled
    back); outcome Failed when a restored table's rows differ from the backup's."""
    say = progress or (lambda _message: None)
    started, clock = datetime.now(UTC), time.monotonic()
    url = resolve_url(database_url)
    register_environment()
    lock_wait_ms(options.lock_wait_timeout)
    if not options.selection:
        raise BadInput("name what to restore with --schema or --table")
    if options.suffix is not None and not SUFFIX.match(options.suffix):
        raise BadInput(f"rename suffix {options.suffix!r} must be 1 to 32 letters, digits, _ or $")
    backup, manifest = _locate(source, backup_id)
    check_can_open(backup, manifest, options.identities)
    keys = manifest_tables(manifest.per_table)
    try:
        tables = choose_tables(options.selection, list(keys))
    except ValueError as exc:
        raise BadInput(f"{exc}; nothing was restored") from None
    _check_target(url, tables, options)
    say(f"restoring {len(tables)} table(s) of backup {manifest.id} from {backup.uri()} into {describe(url)}")
    with tempfile.TemporaryDirectory(prefix="pgwarden-partial-") as tmp:
        local = Path(tmp) / "dump"
        download_verified(backup, manifest, local, options.identities, jobs=options.jobs)
        tool = restore_tool(manifest)
        plan = plan_entries(parse_toc(_listing(tool, manifest, local)), tables, options.selection.schemas)
        placement, terminated = _through_scratch(url, manifest, local, Path(tmp), plan, tool, options, say)
    counts = count_rows(
        url, [str(t) for t in placement.tables.values()], concurrency=BACKGROUND_COUNT_CONCURRENCY
    )
    restored = [
        RestoredTable(
            table=str(now),
            backup_table=keys[was],
            expected=manifest.per_table.get(keys[was]),
            actual=counts.get(str(now)),
            matches=manifest.per_table.get(keys[was]) == counts.get(str(now)),
        )
        for was, now in placement.tables.items()
    ]
    verification = compare_counts({r.table: r.expected or 0 for r in restored}, counts)
    return RestoreReport(
        outcome=Outcome.SUCCEEDED if verification.matches_backup else Outcome.FAILED,
        database=describe(url),
        restored_from=backup.uri(),
        backup=backup_info(backup, manifest),
        terminated_connections=terminated,
        tables=len(restored),
        rows=sum(counts.values()),
        verification=verification,
        only=RestoreOnly(
            schemas=list(options.selection.schemas),
            tables=[qualified_name(*(p for p in t if p)) for t in options.selection.tables],
        ),
        rename_suffix=options.suffix,
        restored_tables=restored,
        left_out=plan.left_out,
        error=None
        if verification.matches_backup
        else ErrorInfo(
            message=f"the restored tables differ from backup {manifest.id}: {verification.mismatch()}"
        ),
        pg_restore_version=tool.version,
        started_at=started,
        completed_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
    )


def _locate(source: str | Storage, backup_id: str | None) -> tuple[Storage, BackupManifest]:
    try:
        return locate_backup(open_given(source), backup_id)
    except ObjectNotFound as exc:
        raise BadInput(f"{exc}; pass the location of a backup or of a prefix holding backups") from None
    except StorageError as exc:
        raise RestoreFailed(str(exc)) from None


def _check_target(url: str, tables: list[TableName], options: PartialOptions) -> None:
    """BadInput before anything is fetched: a table's schema missing in the target, or a name taken."""
    schemas = options.selection.schemas
    final = renaming.final_names(tables, schemas, options.suffix)
    with connect(url) as conn:
        present = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
    missing = sorted({t.schema for t in tables if t.schema not in schemas and t.schema not in present})
    if missing:
        raise BadInput(
            f"schema {', '.join(qualified_name(s) for s in missing)} does not exist in the database; restore "
            "it whole with --schema, or create it first; nothing was restored"
        )
    moved = [with_suffix(s, options.suffix) if options.suffix else s for s in schemas]
    alone = [final[t] for t in tables if t.schema not in schemas]
    placement = renaming.Placement(final, schemas=moved, names=alone)
    _refuse_taken(url, placement, options.clean)


def _refuse_taken(url: str, placement: renaming.Placement, clean: bool) -> None:
    taken = renaming.taken(url, placement)
    if taken and not clean:
        raise BadInput(
            f"the database already has {', '.join(taken)}; restore beside it with --rename-to-suffix "
            "(e.g. _restored), or replace it with --clean; nothing was restored"
        )


def _listing(tool: PgTool, manifest: BackupManifest, local: Path) -> str:
    """The archive's table of contents with each entry's dependencies (`pg_restore -l -v`)."""
    fmt = "directory" if manifest.format == "directory" else "custom"
    done = subprocess.run(
        [tool.path, f"--format={fmt}", "--list", "--verbose", str(local)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RestoreFailed(f"pg_restore could not list the archive: {redact(done.stderr.strip()[-2000:])}")
    return done.stdout


def _through_scratch(
    url: str,
    manifest: BackupManifest,
    local: Path,
    tmp: Path,
    plan: ArchivePlan,
    tool: PgTool,
    options: PartialOptions,
    say: Progress,
) -> tuple[renaming.Placement, int | None]:
    """Restore the plan's entries into a scratch database, name them there, refuse names the target has,
    and move them into the target in one transaction; the scratch database is dropped however it ends."""
    listing = tmp / "selected.list"
    listing.write_text(plan.listing())
    fmt = "directory" if manifest.format == "directory" else "custom"
    name = derived_name(database_name(url), f"{PARTIAL_MARK}{secrets.token_hex(3)}")
    with scratch_database(url, name, say=say) as scratch_url:
        say(f"restoring {len(plan.entries)} archive entries into the scratch database {name}")
        options_list = ["--exit-on-error", "--no-password", "--single-transaction", f"--use-list={listing}"]
        run_pg_restore(tool, scratch_url, [f"--format={fmt}", *options_list], source=local, feed=None)
        pause_point("partial-scratch-restored")
        placement = renaming.place(scratch_url, plan.tables, options.selection.schemas, options.suffix)
        _refuse_taken(url, placement, options.clean)
        terminated = terminate_connections(url, database_name(url)) if options.terminate else None
        say(f"moving {len(placement.tables)} table(s) into {describe(url)} in one transaction")
        _move(scratch_url, url, placement, options)
        pause_point("partial-moved")
    return placement, terminated


def _dump_arguments(placement: renaming.Placement) -> list[str]:
    """pg_dump's selection of exactly these relations and schemas (patterns quoted, so taken literally)."""
    arguments = [f"--table={qualified_name_pattern(t.schema, t.name)}" for t in placement.relations]
    arguments += [f"--schema={qualified_name_pattern(s)}" for s in placement.schemas]
    return arguments


def qualified_name_pattern(*parts: str) -> str:
    """A pg_dump pattern matching exactly these names: each part in double quotes, where *, ? and . are
    literal characters."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _move(scratch_url: str, url: str, placement: renaming.Placement, options: PartialOptions) -> None:
    """pg_dump the placed objects from the scratch database straight into pg_restore on the target."""
    with connect(scratch_url) as conn:
        server = server_version_text(int(conn.info.server_version))
    dump_tool = find_tool("pg_dump", min_major=int(server.split(".")[0]), purpose=f"PostgreSQL {server}")
    load_tool = find_tool("pg_restore", min_major=dump_tool.major, purpose=f"pg_dump {dump_tool.version}")
    dbname_args, env = tool_invocation(scratch_url)
    command = [dump_tool.path, *dbname_args, "--format=custom", "--compress=0", "--strict-names"]
    dump = subprocess.Popen(
        [*command, *_dump_arguments(placement)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert dump.stdout is not None and dump.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=collect_stderr, args=(dump.stderr, errors), daemon=True)
    reader.start()

    def feed(push: Push) -> bool:
        assert dump.stdout is not None
        while chunk := dump.stdout.read(1 << 16):
            try:
                push(chunk)
            except BrokenPipeError:  # pg_restore stopped: its exit status and stderr say why
                return False
        return True

    def dump_failed() -> RestoreFailed:
        reader.join(timeout=5)
        message = redact(b"".join(errors[-10:]).decode(errors="replace").strip())
        return RestoreFailed(f"pg_dump of the restored tables failed: {message or 'no message'}")

    restore_options = _restore_options(clean=options.clean, jobs=1, single_transaction=True)
    try:
        run_pg_restore(
            load_tool,
            url,
            ["--format=custom", *restore_options],
            source=None,
            feed=feed,
            lock_wait=options.lock_wait_timeout,
        )
    except BaseException as exc:
        ended = dump.poll()
        if ended is None:
            dump.kill()
        dump.wait()
        if ended not in (None, 0) and isinstance(exc, RestoreFailed):
            raise dump_failed() from None  # pg_restore only saw the archive end early
        raise
    if dump.wait(timeout=60) != 0:
        raise dump_failed()
