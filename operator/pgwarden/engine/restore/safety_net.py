"""The pre-migration backup (`--backup-to`) and the restore rollback (`--rollback restore`), which can only
make things better.

Before the run: the role's privileges, the maintenance database, the storage and the tools are checked
(BadInput, exit 2, otherwise). On rollback: the backup is opened and its checksum verified, then restored
into a new database beside the failed one and compared with its manifest; only then are the two swapped by
rename, and the failed database is kept under a reported name. Whatever fails, the result says which
database holds what; the original is never dropped.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import BackupInfo, Outcome, RollbackOutcome, RollbackResult
from pgwarden.engine.backup.backup import take_backup
from pgwarden.engine.backup.options import BackupOptions
from pgwarden.engine.backup.stored_dump import download_verified
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.connect import connect, database_name, with_database
from pgwarden.engine.postgres.databases import DatabaseProperties, maintenance
from pgwarden.engine.postgres.schema_diff import quote_ident
from pgwarden.engine.postgres.scratch import guarded
from pgwarden.engine.postgres.tools import PgTool, ToolMissing, find_tool, server_version_text
from pgwarden.engine.restore.privileges import missing_for_restore, read_role_facts
from pgwarden.engine.restore.restore import compare_counts, restore_downloaded, restore_tool, restored_state
from pgwarden.engine.restore.swap import Names, mark_verified, names_for, owning, stranded, swap_in
from pgwarden.errors import BadInput, DatabaseUnavailable, PgwardenError
from pgwarden.redact import register_environment
from pgwarden.storage import BackupManifest, Storage, StorageError, open_storage
from pgwarden.storage.base import InvalidLocation
from pgwarden.storage.manifest import MANIFEST, read_manifest

Say = Callable[[str], None]
Connection = psycopg.Connection[Any]


# What a rollback step can run into and report (SIGTERM arrives as pgwarden.errors.Terminated, a KeyboardInterrupt).
_EXPECTED = (PgwardenError, StorageError, psycopg.Error, LookupError, ValueError, OSError, KeyboardInterrupt)


class BackupSafetyNet:
    """The backup taken at `location` before a run, and the rollback that restores it beside the database and
    swaps it in by rename."""

    def __init__(
        self, url: str, location: str, *, owner: str | None = None, progress: Say | None = None
    ) -> None:
        self.url = url
        self.location = location
        self.owner = owner  # whose backups these are (storage.ownership); the database's when None
        self.progress = progress or (lambda _message: None)
        self._storage: Storage | None = None
        self._before: DatabaseProperties | None = None
        self._interrupted = False

    @property
    def interrupted(self) -> bool:
        """Whether the last restore was cut short (a signal, a lost connection) rather than failing: what it
        left is still to finish, by the next run."""
        return self._interrupted

    # --- before the run ------------------------------------------------------------------------

    def preflight(self, strategy: RollbackStrategy) -> None:
        """BadInput, naming what is missing, unless the backup (and for `restore` the rollback) can work."""
        register_environment()
        storage = self._open_storage()
        try:
            storage.check_writable()
        except StorageError as exc:
            raise BadInput(
                f"the backup location {storage.uri()} is not usable: {exc}; nothing was changed"
            ) from exc
        with connect(self.url) as conn:
            server = server_version_text(int(conn.info.server_version))
            facts = read_role_facts(conn) if strategy == RollbackStrategy.RESTORE else None
        dump = _tool(
            "pg_dump", min_major=int(server.split(".")[0]), purpose=f"the server (PostgreSQL {server})"
        )
        if facts is None:
            return
        if facts.database == databases.MAINTENANCE_DATABASE:
            raise BadInput(
                f"--rollback restore cannot replace the database {databases.MAINTENANCE_DATABASE}: the swap is "
                "made from it; use --rollback transaction or down for it"
            )
        missing = missing_for_restore(facts)
        try:
            with maintenance(self.url) as conn:
                self._before = databases.read_properties(conn, facts.database)
        except DatabaseUnavailable as exc:
            missing.append(
                f"access to the maintenance database {databases.MAINTENANCE_DATABASE}, from which databases are "
                f"created and renamed (GRANT CONNECT ON DATABASE {databases.MAINTENANCE_DATABASE} TO "
                f"{quote_ident(facts.role)}): {exc}"
            )
        if missing:
            listed = "\n".join(f"  - {item}" for item in missing)
            raise BadInput(
                f"--rollback restore cannot work here, so nothing was changed: role {quote_ident(facts.role)} "
                f"lacks\n{listed}\nGrant what is missing (as a superuser or the cloud's admin role), or choose "
                "--rollback transaction or down."
            )
        _tool("pg_restore", min_major=dump.major, purpose=f"pg_dump {dump.version}, which writes the backup")

    def take(self) -> BackupInfo:
        """The pre-migration backup; PgwardenError when it fails (nothing is migrated then)."""
        report = take_backup(self.url, self._open_storage(), BackupOptions(owner=self.owner), self.progress)
        if report.outcome != Outcome.SUCCEEDED or report.backup is None:
            message = report.error.message if report.error else "no backup was written"
            raise PgwardenError(f"the pre-migration backup failed, nothing was migrated: {message}")
        if self._before is not None:  # the database as it is right before the run, for the restored copy
            with maintenance(self.url) as conn:
                self._before = databases.read_properties(conn, self._before.name)
        return report.backup

    def _open_storage(self) -> Storage:
        if self._storage is None:
            try:
                self._storage = open_storage(self.location)
            except InvalidLocation as exc:
                raise BadInput(str(exc)) from exc
        return self._storage

    # --- the rollback --------------------------------------------------------------------------

    def backup_gone(self, backup: BackupInfo) -> bool:
        """Whether the backup is no longer where it was taken (no manifest): nothing to restore from."""
        try:
            return not self._open_storage().child(backup.id).exists(MANIFEST)
        except StorageError:
            return False  # unreachable is not gone: the restore says what failed

    def restore(self, backup: BackupInfo, say: Say) -> RollbackResult:
        """Undo the run from `backup`; never raises for a failure it can foresee, and the result's message
        says which database holds what."""
        database = database_name(self.url)
        self._interrupted = False
        try:
            with tempfile.TemporaryDirectory(prefix="pgwarden-rollback-") as scratch_dir:
                return self._restore(backup, database, Path(scratch_dir) / "download", say)
        except OSError as exc:
            return _failed(f"local scratch space failed: {exc}", untouched(database))

    def _restore(self, backup: BackupInfo, database: str, local: Path, say: Say) -> RollbackResult:
        now, token = datetime.now(UTC), secrets.token_hex(3)
        names = names_for(database, now, token)
        try:
            manifest, tool = self._open_backup(backup, local, say)
            with maintenance(self.url) as conn:
                before = self._before or databases.read_properties(conn, database)
                names = names_for(database, now, token, taken=partial(databases.exists, conn))
        except _EXPECTED as exc:
            return _failed(f"backup {backup.id} cannot be used: {self._why(exc)}", untouched(database))
        try:
            with maintenance(self.url) as owner, owning(owner, names):
                failed = self._restored_copy(backup, names, before, (tool, manifest, local), owner, say)
                return failed or self._swap(backup, manifest, names, owner, say)
        except _EXPECTED as exc:  # the owning session itself failed: look again from a new one
            return self._settle(backup, manifest, names, f"the swap failed: {self._why(exc)}")

    def _open_backup(self, backup: BackupInfo, local: Path, say: Say) -> tuple[BackupManifest, PgTool]:
        """The backup's manifest and a pg_restore for it, and its dump downloaded and checksum-verified."""
        stored = self._open_storage().child(backup.id)
        manifest = read_manifest(stored)
        if manifest.sha256 != backup.sha256:
            raise PgwardenError(
                f"its manifest names sha256 {manifest.sha256}, the backup taken before the run had {backup.sha256}"
            )
        tool = restore_tool(manifest)
        say(f"downloading and verifying {stored.uri(manifest.dump_file)} ({manifest.size_bytes} bytes)")
        download_verified(stored, manifest, local)
        return manifest, tool

    def _restored_copy(
        self,
        backup: BackupInfo,
        names: Names,
        before: DatabaseProperties,
        source: tuple[PgTool, BackupManifest, Path],
        owner: Connection,
        say: Say,
    ) -> RollbackResult | None:
        """The backup restored into a new database beside the original, checked and renamed verified; None
        when that worked, else the failed result (the copy dropped, the original untouched)."""
        say(f"restoring backup {backup.id} into a new database {names.scratch}")
        stage, creating, created = f"creating the database {names.scratch} failed", False, False
        try:
            with guarded(self.url, names.scratch):  # a SIGKILL from here on leaves no restored copy behind
                creating = True
                databases.create_like(owner, names.scratch, before)
                stage, created = f"restoring into {names.scratch} failed", True
                self._fill(names.scratch, before, *source, say)
                pause_point("rollback-restored")
                stage = f"marking {names.scratch} verified failed"
                mark_verified(owner, names)
        except _EXPECTED as exc:
            # A CREATE DATABASE that failed (rather than being interrupted) leaves that name alone: not ours.
            ours = created or (creating and isinstance(exc, KeyboardInterrupt))
            state = self._drop_copies(names) if ours else untouched(names.database)
            return _failed(f"{stage}: {self._why(exc)}", state)
        return None

    def _fill(
        self,
        scratch: str,
        before: DatabaseProperties,
        tool: PgTool,
        manifest: BackupManifest,
        local: Path,
        say: Say,
    ) -> None:
        """Restore into the scratch database, check it against the manifest, give it the original's
        database-level properties. Raises when any of it fails."""
        url = with_database(self.url, scratch)
        restore_downloaded(url, tool, manifest, local, progress=say)
        counts, schema = restored_state(url)
        verification = compare_counts(
            manifest.per_table, counts, expected_schema=manifest.schema_fingerprint, actual_schema=schema
        )
        if not verification.matches_backup:
            raise PgwardenError(f"the restored database differs from the backup: {verification.mismatch()}")
        with maintenance(self.url) as conn:
            databases.copy_properties(conn, scratch, before)

    def _swap(
        self, backup: BackupInfo, manifest: BackupManifest, names: Names, owner: Connection, say: Say
    ) -> RollbackResult:
        """Close the failed database, end its sessions, rename it away and the verified copy in."""
        say(f"swapping {names.verified} in for {names.database}, which is kept as {names.failed}")
        try:
            swap_in(owner, names, _role(owner))
        except _EXPECTED as exc:
            return self._settle(backup, manifest, names, f"the swap failed: {self._why(exc)}")
        return self._finish(backup, manifest, names)

    def _settle(
        self, backup: BackupInfo, manifest: BackupManifest, names: Names, reason: str
    ) -> RollbackResult:
        """After a failed swap, look at which names exist and put the failed database back under its name."""
        try:
            with maintenance(self.url) as conn:
                has = {n: databases.exists(conn, n) for n in (names.database, names.verified, names.failed)}
                if has[names.database] and has[names.failed] and not has[names.verified]:
                    return self._finish(backup, manifest, names)  # it had happened after all
                if has[names.failed] and not has[names.database]:
                    databases.rename(conn, names.failed, names.database)
                databases.allow_connections(conn, names.database, True)
        except _EXPECTED as exc:
            return _failed(f"{reason}; then putting things back failed: {self._why(exc)}", stranded(names))
        return _failed(reason, self._drop_copies(names, back=True))

    def _finish(self, backup: BackupInfo, manifest: BackupManifest, names: Names) -> RollbackResult:
        failed = quote_ident(names.failed)
        message = (
            f"restored backup {backup.id} into a new database and swapped it in: {names.database} now holds the "
            f"backup's data and schema ({manifest.tables} tables, {manifest.rows} rows, matching its manifest); "
            f"the failed run's database is kept as {names.failed}: inspect it, then DROP DATABASE {failed};"
        )
        try:
            with maintenance(self.url) as conn:
                databases.allow_connections(conn, names.failed, True)
        except _EXPECTED as exc:
            message += (
                f" (it does not accept connections: {self._why(exc)}; "
                f"ALTER DATABASE {failed} ALLOW_CONNECTIONS true; to look inside)"
            )
        return RollbackResult(strategy="restore", outcome=RollbackOutcome.SUCCEEDED, message=message)

    def _drop_copies(self, names: Names, *, back: bool = False) -> str:
        """Drop the restored copy, verified or not (never the original); the state afterwards, in words."""
        state = untouched(names.database, back=back)
        copies = [names.scratch, names.verified]
        try:
            with maintenance(self.url) as conn:
                copy = next((c for c in copies if databases.exists(conn, c)), names.scratch)
                for name in copies:
                    databases.drop(conn, name)
        except _EXPECTED as exc:
            return (
                f"{state}; the restored copy could not be dropped ({self._why(exc)}): "
                f"DROP DATABASE IF EXISTS {quote_ident(names.scratch)}; "
                f"DROP DATABASE IF EXISTS {quote_ident(names.verified)};"
            )
        return f"{state}; the restored copy {copy} was dropped"

    def _why(self, exc: BaseException) -> str:
        """What went wrong, in words; notes whether it was an interruption rather than a failure."""
        if isinstance(exc, KeyboardInterrupt | psycopg.OperationalError):
            self._interrupted = True
        return _message(exc)


def untouched(database: str, *, back: bool = False) -> str:
    """The state when the swap did not happen, or was undone (pure)."""
    if back:
        return f"The swap was undone: {database} is back as the failed run left it"
    return f"Nothing was swapped: {database} is as the failed run left it"


def _failed(reason: str, state: str) -> RollbackResult:
    return RollbackResult(
        strategy="restore",
        outcome=RollbackOutcome.FAILED,
        message=f"the restore rollback failed: {reason.rstrip('. ')}. {state}",
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):  # SIGTERM (pgwarden.errors.Terminated) or Ctrl-C
        return str(exc) or "pgwarden was interrupted (Ctrl-C)"
    if isinstance(exc, psycopg.Error):
        return str(exc.diag.message_primary or exc).strip()
    return str(exc)


def _role(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else "the role"


def _tool(name: str, *, min_major: int, purpose: str) -> PgTool:
    try:
        return find_tool(name, min_major=min_major, purpose=purpose)
    except ToolMissing as exc:
        raise BadInput(str(exc)) from exc
