"""Settling what a dead run left on a database, before any command touches it (and as `pgwarden recover`).

In this order, each from where it can be read whatever state the database is in:
1. scratch databases whose owner is gone are dropped (engine.postgres.scratch; from the maintenance database);
2. a restore rollback's swap that died part-way is finished (engine.restore.swap; from the database names,
   so it works when no database has the name);
3. in the database, under the migrator lock of each journal's schema: a dead run that was rolling back has its
   rollback finished with the strategy and backup it recorded; a dead run that was going forward is continued
   by the next migrate, and undone only by `pgwarden recover` (`undo_forward`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import Recovered, RecoveryState, RollbackOutcome
from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.connect import connect, database_name
from pgwarden.engine.postgres.scratch import sweep_abandoned
from pgwarden.engine.recovery import journal, undo
from pgwarden.engine.recovery.journal import JournalRun
from pgwarden.engine.recovery.locks import MigratorBusy, lock_key, migrator_lock
from pgwarden.engine.restore.swap import settle_swaps
from pgwarden.errors import DatabaseUnavailable

Say = Callable[[str], None]
Connection = psycopg.Connection[Any]


@dataclass
class Notes:
    """What was found and done, as the report's `recovered` block will say it."""

    found: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: bool = False
    partial: bool = False

    def extend(self, other: Notes) -> None:
        self.found += other.found
        self.done += other.done
        self.failed = self.failed or other.failed
        self.partial = self.partial or other.partial

    @property
    def state(self) -> RecoveryState:
        if self.failed:
            return RecoveryState.FAILED
        if self.partial:
            return RecoveryState.PARTIAL
        return RecoveryState.RECOVERED if self.found else RecoveryState.CLEAN

    def recovered(self, *, always: bool = False) -> Recovered | None:
        """The report's block; None when nothing was found, unless `always`."""
        if not self.found and not always:
            return None
        return Recovered(found=list(self.found), done=list(self.done), state=self.state)


def settle_scratch(url: str, say: Say) -> Notes:
    """Drop the scratch databases of dead runs on the server of `url` (any database of it will do)."""
    notes = Notes()
    try:
        with databases.maintenance(url) as conn:
            for name in sweep_abandoned(conn, say):
                notes.found.append(f"scratch database {name}, left by a run that died")
                notes.done.append(f"dropped {name}")
    except DatabaseUnavailable as exc:
        say(f"scratch databases were not looked for: {exc}")
    return notes


def settle_server(url: str, say: Say) -> Notes:
    """Steps 1 and 2, from the maintenance database: scratch databases and the database's swaps."""
    notes = settle_scratch(url, say)
    try:
        with databases.maintenance(url) as conn:
            role = str((conn.execute("SELECT current_user").fetchone() or ("?",))[0])
            for settled in settle_swaps(conn, database_name(url), role):
                say(f"{settled.found}; {settled.done}")
                notes.found.append(settled.found)
                notes.done.append(settled.done)
                notes.failed = notes.failed or settled.failed
    except DatabaseUnavailable:
        pass  # without the maintenance database there is no swap (the restore strategy needs it)
    return notes


def settle_runs(url: str, schema: str, *, undo_forward: bool, wait_seconds: float | None, say: Say) -> Notes:
    """Step 3 for the journal in `schema`, under that schema's migrator lock in the database (waited for up to
    `wait_seconds`; None: only if free now, else a live run owns the journal and nothing is touched).
    BackupGone (exit 2) when a rollback needs a backup that is gone."""
    notes = Notes()
    try:
        with _locked(url, schema, wait_seconds) as conn:
            if conn is None:
                return notes
            for run in journal.unfinished(conn, schema):
                notes.extend(_settle_run(conn, url, run, undo_forward=undo_forward, say=say))
                if conn.closed:  # a restore replaced the database: what else is left is read from the new one
                    again = settle_runs(
                        url, schema, undo_forward=undo_forward, wait_seconds=wait_seconds, say=say
                    )
                    notes.extend(again)
                    break
    except DatabaseUnavailable:
        pass  # no such database (yet): nothing of a run can be in it
    return notes


@contextlib.contextmanager
def _locked(url: str, schema: str, wait_seconds: float | None) -> Iterator[Connection | None]:
    with connect(url, autocommit=True, connect_timeout=10) as conn:
        if wait_seconds is None:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(schema)]).fetchone()
            if not (row and row[0]):
                yield None
                return
            try:
                yield conn
            finally:
                if not conn.closed and not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", [lock_key(schema)])
            return
        with migrator_lock(conn, schema, wait_seconds=wait_seconds):
            yield conn


def describe_run(run: JournalRun) -> str:
    """A dead run in words (pure)."""
    applied = ", ".join(run.versions) or "nothing"
    doing = "rolling back" if run.state == journal.ROLLING_BACK else "migrating"
    return (
        f"run {run.id} (started {run.started_on:%Y-%m-%d %H:%M:%S %Z}) died while {doing}: it had applied "
        f"{applied}; rollback strategy {run.strategy}"
        + (f", backup {run.backup.info.id}" if run.backup else "")
    )


def _settle_run(conn: Connection, url: str, run: JournalRun, *, undo_forward: bool, say: Say) -> Notes:
    notes = Notes(found=[describe_run(run)])
    strategy = RollbackStrategy(run.strategy)
    if run.state == journal.RUNNING and not undo_forward:
        notes.done.append(
            "left it: the next `pgwarden migrate` continues the run, `pgwarden recover` undoes it"
        )
        notes.partial = bool(run.steps)
        return notes
    if run.steps and strategy not in (RollbackStrategy.DOWN, RollbackStrategy.RESTORE):
        notes.done.append(
            f"left it: rollback strategy {run.strategy} cannot undo migrations that were committed; "
            f"{', '.join(run.versions)} stay applied and the next `pgwarden migrate` continues the run from there"
        )
        notes.partial = True
        return notes
    say(f"finishing the rollback of run {run.id} ({run.strategy})")
    journal.mark(conn, run.schema, run.id, journal.ROLLING_BACK)
    restorer = None
    if run.backup is not None:  # a restore rollback's backup: loaded (with storage) only when there is one
        from pgwarden.engine.restore.safety_net import BackupSafetyNet

        restorer = BackupSafetyNet(url, run.backup.storage, owner=run.backup.owner, progress=say)
    undone = undo.undo_run(conn, run, restorer, say, database=database_name(url))
    result = undone.result
    notes.done.append(f"rollback {run.strategy}: {result.outcome}: {result.message}")
    if result.outcome == RollbackOutcome.FAILED or undone.interrupted:
        notes.failed = True
        notes.done.append(
            "the run stays recorded as rolling back, so the next command tries again; to accept the database as "
            f"it is instead: {journal.abandon_statement(run.schema, run.id)}"
        )
        return notes
    if not conn.closed:
        journal.mark(conn, run.schema, run.id, journal.FINISHED, outcome="RolledBack", message=result.message)
    return notes


def settle(
    url: str,
    *,
    undo_forward: bool,
    wait_seconds: float | None,
    say: Say,
    schemas: list[str] | None = None,
) -> Notes:
    """Everything, for every command but migrate (which does the same under its own locks): the server's
    scratch databases and the database's swaps, then every journal of the database (or those of `schemas`)."""
    notes = settle_server(url, say)
    try:
        with connect(url, autocommit=True, connect_timeout=10) as conn:
            found = schemas or journal.schemas_with_journal(conn)
    except DatabaseUnavailable:
        return notes
    for schema in found:
        try:
            with _maintenance_lock(url, schema, wait_seconds) as held:
                if not held:
                    notes.found.append(
                        f"a live run holds the migrator lock of {schema}: its journal is left to it"
                    )
                    continue
                notes.extend(
                    settle_runs(url, schema, undo_forward=undo_forward, wait_seconds=wait_seconds, say=say)
                )
        except MigratorBusy as exc:
            notes.found.append(str(exc))
            notes.failed = True
    return notes


@contextlib.contextmanager
def _maintenance_lock(url: str, schema: str, wait_seconds: float | None) -> Iterator[bool]:
    """The migrator lock a restore swap cannot release (in the maintenance database), as migrate takes it;
    without a maintenance database only the lock in the database itself serialises (held: True)."""
    with contextlib.ExitStack() as stack:
        try:
            conn: Connection | None = stack.enter_context(databases.maintenance(url))
        except DatabaseUnavailable:
            conn = None
        if conn is None:
            yield True
            return
        database = database_name(url)
        if wait_seconds is not None:
            with migrator_lock(conn, schema, wait_seconds=wait_seconds, database=database):
                yield True
            return
        key = lock_key(schema, database)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held and not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
