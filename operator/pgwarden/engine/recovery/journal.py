"""The journal of migration runs: `<schema>.run_journal` and `<schema>.run_journal_steps` in the target database.

A run's row is written in the same transaction as its first commit, each applied migration's step (with the
recipe that undoes it) in the same transaction as that migration's commit, or before the first statement of
one that runs outside a transaction; the row says `finished` in the same transaction as the run's last
commit. So the journal never claims what did not happen, and a run that died leaves a row that is not
finished: `running` (it died going forward: the next migrate continues it) or `rolling back` (any later
command finishes the rollback with the strategy and backup the row records). Recipes are plain SQL written
by the run, so finishing a dead run's rollback needs neither its files nor its process.

The journal lives in the target's own schema because that is where per-run and per-statement progress can
be written atomically with what it records; a swap by rename moves the whole database, journal included, and
`engine.restore.swap` finds a half-done swap from the database names instead.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.api.reports import BackupInfo

Connection = psycopg.Connection[Any]

RUNS = "run_journal"
STEPS = "run_journal_steps"
RUNNING = "running"
ROLLING_BACK = "rolling back"
FINISHED = "finished"
ABANDONED = "abandoned"  # set by a person who accepts the database as a dead run left it


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, readable run id: `20261130T040506Z-a1b2c3`."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class UndoStatement:
    """One statement of a down script, and its kind (`DROP INDEX`, ...)."""

    sql: str
    kind: str


@dataclass(frozen=True)
class Undo:
    """How to undo one applied migration: its down script (None: it has none) and the SQL that forgets it in
    the history once undone."""

    version: str
    statements: tuple[UndoStatement, ...] | None
    transactional: bool
    forget: str

    def to_json(self) -> dict[str, Any]:
        statements = None if self.statements is None else [vars(s) for s in self.statements]
        return {"statements": statements, "transactional": self.transactional, "forget": self.forget}

    @classmethod
    def from_json(cls, version: str, data: dict[str, Any]) -> Undo:
        raw = data.get("statements")
        statements = None if raw is None else tuple(UndoStatement(str(s["sql"]), str(s["kind"])) for s in raw)
        return cls(version, statements, bool(data.get("transactional", True)), str(data.get("forget") or ""))


@dataclass(frozen=True)
class Step:
    """A migration the run applied (wholly or in part), in the order applied; `undone` statements of a
    non-transactional down script have run already."""

    position: int
    undo: Undo
    undone: int = 0

    @property
    def version(self) -> str:
        return self.undo.version


@dataclass(frozen=True)
class RecordedBackup:
    """The pre-migration backup a run took: where its storage is, whose it is, and which one."""

    storage: str
    owner: str | None
    info: BackupInfo

    def to_json(self) -> dict[str, Any]:
        return {"storage": self.storage, "owner": self.owner, **self.info.to_json_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedBackup:
        info = BackupInfo.model_validate({k: v for k, v in data.items() if k not in ("storage", "owner")})
        return cls(storage=str(data["storage"]), owner=data.get("owner"), info=info)


@dataclass(frozen=True)
class JournalRun:
    """One run as the journal records it."""

    id: str
    schema: str
    state: str
    strategy: str
    backup: RecordedBackup | None
    version_before: str | None
    forget_state: str | None
    """SQL that forgets the schema states the run recorded, once its changes are undone (no drift then)."""
    steps: tuple[Step, ...]
    started_on: datetime
    continued: int = 0

    @property
    def versions(self) -> list[str]:
        return [step.version for step in self.steps]


def _t(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def ensure(conn: Connection, schema: str) -> None:
    """The journal's tables (the schema exists already: the history made it), in the caller's transaction."""
    conn.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                id text PRIMARY KEY,
                state text NOT NULL,
                strategy text NOT NULL,
                backup jsonb,
                version_before text,
                forget_state text,
                outcome text,
                message text,
                continued integer NOT NULL DEFAULT 0,
                started_by text NOT NULL DEFAULT current_user,
                started_on timestamptz NOT NULL DEFAULT now(),
                updated_on timestamptz NOT NULL DEFAULT now()
            )"""
        ).format(_t(schema, RUNS))
    )
    conn.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                run_id text NOT NULL REFERENCES {} (id) ON DELETE CASCADE,
                position integer NOT NULL,
                version text NOT NULL,
                undo jsonb NOT NULL,
                undone integer NOT NULL DEFAULT 0,
                recorded_on timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (run_id, position)
            )"""
        ).format(_t(schema, STEPS), _t(schema, RUNS))
    )


def open_run(
    conn: Connection,
    schema: str,
    run_id: str,
    *,
    strategy: str,
    backup: RecordedBackup | None,
    version_before: str | None,
    forget_state: str | None,
) -> None:
    """The run's row, `running`; written in the transaction of the run's first commit."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, state, strategy, backup, version_before, forget_state)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
        ).format(_t(schema, RUNS)),
        [
            run_id,
            RUNNING,
            strategy,
            json.dumps(backup.to_json()) if backup else None,
            version_before,
            forget_state,
        ],
    )


def continue_run(conn: Connection, schema: str, run_id: str) -> None:
    """A later run takes over a dead run's row (and its rollback)."""
    conn.execute(
        sql.SQL("UPDATE {} SET continued = continued + 1, updated_on = now() WHERE id = %s").format(
            _t(schema, RUNS)
        ),
        [run_id],
    )


def record_step(conn: Connection, schema: str, run_id: str, undo: Undo) -> int:
    """A migration the run applies, with its undo recipe; its position in the run."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (run_id, position, version, undo) SELECT %s, coalesce(max(position), 0) + 1, %s, %s"
            " FROM {} WHERE run_id = %s RETURNING position"
        ).format(_t(schema, STEPS), _t(schema, STEPS)),
        [run_id, undo.version, json.dumps(undo.to_json()), run_id],
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_undone(conn: Connection, schema: str, run_id: str, position: int, undone: int) -> None:
    """How many statements of a non-transactional down script have run."""
    conn.execute(
        sql.SQL("UPDATE {} SET undone = %s WHERE run_id = %s AND position = %s").format(_t(schema, STEPS)),
        [undone, run_id, position],
    )


def drop_step(conn: Connection, schema: str, run_id: str, position: int) -> None:
    """The step is undone (in the transaction that undid it, or right after)."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE run_id = %s AND position = %s").format(_t(schema, STEPS)),
        [run_id, position],
    )


def mark(
    conn: Connection,
    schema: str,
    run_id: str,
    state: str,
    *,
    outcome: str | None = None,
    message: str | None = None,
) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {} SET state = %s, outcome = coalesce(%s, outcome), message = coalesce(%s, message),"
            " updated_on = now() WHERE id = %s"
        ).format(_t(schema, RUNS)),
        [state, outcome, message, run_id],
    )


def exists(conn: Connection, schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [_t(schema, RUNS).as_string(conn)]).fetchone()
    return bool(row and row[0])


def schemas_with_journal(conn: Connection) -> list[str]:
    """Every schema of the database that holds a journal (pgwarden's, or one named with --history-schema)."""
    rows = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = %s AND c.relkind = 'r' ORDER BY 1",
        [RUNS],
    ).fetchall()
    return [str(r[0]) for r in rows]


def unfinished(conn: Connection, schema: str) -> list[JournalRun]:
    """The runs that are neither finished nor abandoned, oldest first (with their steps)."""
    if not exists(conn, schema):
        return []
    rows = conn.execute(
        sql.SQL(
            "SELECT id, state, strategy, backup, version_before, forget_state, started_on, continued FROM {}"
            " WHERE state IN (%s, %s) ORDER BY started_on, id"
        ).format(_t(schema, RUNS)),
        [RUNNING, ROLLING_BACK],
    ).fetchall()
    runs = []
    for run_id, state, strategy, backup, before, forget, started, continued in rows:
        steps = conn.execute(
            sql.SQL(
                "SELECT position, version, undo, undone FROM {} WHERE run_id = %s ORDER BY position"
            ).format(_t(schema, STEPS)),
            [run_id],
        ).fetchall()
        runs.append(
            JournalRun(
                id=str(run_id),
                schema=schema,
                state=str(state),
                strategy=str(strategy),
                backup=RecordedBackup.from_json(_json(backup)) if backup else None,
                version_before=before,
                forget_state=forget,
                steps=tuple(Step(int(p), Undo.from_json(str(v), _json(u)), int(n)) for p, v, u, n in steps),
                started_on=started,
                continued=int(continued),
            )
        )
    return runs


def abandon_statement(schema: str, run_id: str) -> str:
    """The SQL a person runs to accept the database as a dead run left it (pure; pastes back as is)."""
    table = ".".join(_quoted(part) for part in (schema, RUNS))
    literal = "'" + run_id.replace("'", "''") + "'"
    return f"UPDATE {table} SET state = '{ABANDONED}' WHERE id = {literal};"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _json(value: Any) -> dict[str, Any]:
    data = json.loads(value) if isinstance(value, str) else value
    assert isinstance(data, dict)
    return data
