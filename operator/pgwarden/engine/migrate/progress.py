"""Progress of long statements: once a migration statement has run for a while, which one it is and, for an
index build, its phase and blocks and tuples done of total (pg_stat_progress_create_index), at a bounded rate.

A second session reads the progress view only when a report is due; what a report says is pure
(`StatementProgress.describe`). The run's `say` prints it (stderr, so the Job's log) and an optional callback
gets the value (for the operator to surface in status).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgwarden.engine.migrate.statements import RunningStatement
from pgwarden.engine.postgres.connect import connect
from pgwarden.errors import PgwardenError
from pgwarden.threads import start_helper

log = logging.getLogger(__name__)
REPORT_AFTER = 2.0
REPORT_EVERY = 5.0

_INDEX_PROGRESS = (
    "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total, relid::regclass::text "
    "FROM pg_stat_progress_create_index WHERE pid = %s"
)


@dataclass(frozen=True)
class StatementProgress:
    """Where a long statement is: which migration, how long it has run, and how far an index build got."""

    version: str
    script: str
    line: int
    statement: str
    elapsed_seconds: float
    phase: str | None = None
    table: str | None = None
    blocks_done: int | None = None
    blocks_total: int | None = None
    tuples_done: int | None = None
    tuples_total: int | None = None

    def describe(self) -> str:
        """One progress line (pure)."""
        line = f"{self.version} {self.script}:{self.line} running for {self.elapsed_seconds:.0f}s: {self.statement}"
        if self.phase:
            line += f"; index build on {self.table}: {self.phase}" if self.table else f"; {self.phase}"
            if self.blocks_total:
                line += f", blocks {self.blocks_done or 0:,} of {self.blocks_total:,}"
            if self.tuples_total:
                line += f", tuples {self.tuples_done or 0:,} of {self.tuples_total:,}"
        return line


OnProgress = Callable[[StatementProgress], None]


class ProgressWatch:
    """A statement observer that reports a statement running longer than `after` seconds every `every`
    seconds until it ends (`with ProgressWatch(url, report): ...`)."""

    def __init__(
        self, url: str, report: OnProgress, *, after: float = REPORT_AFTER, every: float = REPORT_EVERY
    ) -> None:
        self.url = url
        self.report = report
        self.after = after
        self.every = every
        self._current: RunningStatement | None = None
        self._changed = threading.Condition()
        self._stop = False
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._watch, name="pgwarden-progress", daemon=True)

    def __enter__(self) -> ProgressWatch:
        start_helper(self._thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    def started(self, statement: RunningStatement) -> None:
        with self._changed:
            self._current = statement
            self._changed.notify_all()

    def finished(self, statement: RunningStatement) -> None:
        with self._changed:
            if self._current is statement:
                self._current = None
            self._changed.notify_all()

    def _watch(self) -> None:
        while True:
            with self._changed:
                while not self._stop and self._current is None:
                    self._changed.wait()
                if self._stop:
                    return
                statement = self._current
                due = statement.started + self.after if statement else 0.0
                while not self._stop and self._current is statement and time.monotonic() < due:
                    self._changed.wait(timeout=due - time.monotonic())
                if self._stop or self._current is not statement or statement is None:
                    continue
            self._report_until_done(statement)

    def _report_until_done(self, statement: RunningStatement) -> None:
        while True:
            try:
                self.report(self._read(statement))
            except Exception as exc:  # a report must never break the run it describes
                log.debug("progress report failed: %s", exc)
            deadline = time.monotonic() + self.every
            with self._changed:
                while not self._stop and self._current is statement and time.monotonic() < deadline:
                    self._changed.wait(timeout=deadline - time.monotonic())
                if self._stop or self._current is not statement:
                    return

    def _read(self, statement: RunningStatement) -> StatementProgress:
        progress = StatementProgress(
            version=statement.version,
            script=statement.script,
            line=statement.line,
            statement=statement.summary,
            elapsed_seconds=time.monotonic() - statement.started,
        )
        row = self._index_progress(statement.pid)
        if row is None:
            return progress
        phase, blocks_done, blocks_total, tuples_done, tuples_total, table = row
        return dataclasses.replace(
            progress,
            phase=str(phase),
            table=str(table) if table else None,
            blocks_done=_int(blocks_done),
            blocks_total=_int(blocks_total),
            tuples_done=_int(tuples_done),
            tuples_total=_int(tuples_total),
        )

    def _index_progress(self, pid: int) -> tuple[object, ...] | None:
        try:
            if self._conn is None:
                self._conn = connect(self.url, autocommit=True, connect_timeout=5)
            return self._conn.execute(_INDEX_PROGRESS, [pid]).fetchone()
        except (psycopg.Error, PgwardenError) as exc:
            log.debug("no index-build progress: %s", exc)
            return None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None
