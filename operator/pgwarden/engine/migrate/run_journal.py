"""One run's entries in the journal (engine.recovery.journal): its row, and a step with its undo recipe for every
migration it applies, each written in the transaction of what it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgwarden.engine.migrate import history
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.recovery import journal
from pgwarden.engine.recovery.journal import JournalRun, RecordedBackup, Undo, UndoStatement

Connection = psycopg.Connection[Any]


def undo_recipe(conn: Connection, file: MigrationFile, schema: str) -> Undo:
    """What undoes `file`: its down script's statements as parsed, and the SQL that forgets it in the history."""
    statements = (
        None if file.down_sql is None else tuple(UndoStatement(s.text, s.kind) for s in file.down_statements)
    )
    return Undo(
        version=file.version,
        statements=statements,
        transactional=file.down_runs_in_transaction,
        forget=history.forget_statement(conn, file.version, schema),
    )


@dataclass
class RunJournal:
    """This run's row: opened with its first commit, or the dead run's row it continues."""

    schema: str
    run_id: str
    continuing: JournalRun | None = None
    opened: bool = False
    """Whether the row exists (committed): from then on a failure is undone from the journal."""
    recorded: set[str] = field(default_factory=set)
    """Versions with a step in the row already (a continued run's, or this run's)."""

    @classmethod
    def for_run(cls, schema: str, continuing: JournalRun | None) -> RunJournal:
        if continuing is None:
            return cls(schema, journal.new_run_id())
        return cls(schema, continuing.id, continuing, opened=True, recorded=set(continuing.versions))

    def open(
        self,
        conn: Connection,
        *,
        strategy: str,
        backup: RecordedBackup | None,
        version_before: str | None,
    ) -> None:
        """Inside the run's first transaction: the journal's tables, and the row (or the continued row's mark)."""
        journal.ensure(conn, self.schema)
        if self.continuing is not None:
            journal.continue_run(conn, self.schema, self.run_id)
            return
        forget_state = history.forget_states_statement(
            conn, history.last_state_id(conn, self.schema), self.schema
        )
        journal.open_run(
            conn,
            self.schema,
            self.run_id,
            strategy=strategy,
            backup=backup,
            version_before=version_before,
            forget_state=forget_state,
        )

    def step(self, conn: Connection, file: MigrationFile) -> None:
        """The migration `file` is applied in the caller's transaction (or is about to be, statement by
        statement): record how to undo it, once."""
        if file.version in self.recorded:
            return
        journal.record_step(conn, self.schema, self.run_id, undo_recipe(conn, file, self.schema))
        self.recorded.add(file.version)

    def forget_step(self, conn: Connection, version: str) -> None:
        """A file that failed at its first statement, leaving nothing: nothing of it is to undo."""
        recorded = self.read(conn)
        for step in recorded.steps if recorded else ():
            if step.version == version:
                journal.drop_step(conn, self.schema, self.run_id, step.position)
        self.recorded.discard(version)

    def mark(
        self, conn: Connection, state: str, *, outcome: str | None = None, message: str | None = None
    ) -> None:
        journal.mark(conn, self.schema, self.run_id, state, outcome=outcome, message=message)

    def read(self, conn: Connection) -> JournalRun | None:
        """This run as the journal records it (None: its row is not in this database)."""
        return next((run for run in journal.unfinished(conn, self.schema) if run.id == self.run_id), None)
