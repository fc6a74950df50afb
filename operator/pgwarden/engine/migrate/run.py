"""One migration run: before-state, transactional groups, verification before every COMMIT, rollback, report.

Every COMMIT is preceded by the verification of what it commits (engine.migrate.gate). A file that cannot
run in a transaction runs statement by statement (engine.migrate.outside) and is verified right after. The
run keeps a journal (engine.migrate.run_journal) written in the transactions of what it records, so a run
killed anywhere is continued or undone by the next one. Whatever ends the run early — a failed statement,
a timeout, a lost connection, SIGTERM — goes through `failing.fail`, so the rollback strategy runs and the
report says which version the database is at.

The steps live in modules of their own; `Run` holds what they share and drives them in order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import (
    AppliedMigration,
    Drift,
    LockRetry,
    MigrationReport,
    Outcome,
    Verification,
)
from pgwarden.engine.migrate import failing, gate, history, reporting
from pgwarden.engine.migrate.applying import apply_in_transaction, recorded
from pgwarden.engine.migrate.blocker_watch import BlockerWatch
from pgwarden.engine.migrate.failures import RunFailed, as_run_failure
from pgwarden.engine.migrate.outside import apply_outside_transaction
from pgwarden.engine.migrate.plan import MigrationPlan, PlannedMigration
from pgwarden.engine.migrate.run_journal import RunJournal
from pgwarden.engine.migrate.timeouts import retry_delays
from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres.blockers import describe_blockers
from pgwarden.engine.postgres.connect import describe
from pgwarden.engine.postgres.state import SchemaState, capture_state, drift_since
from pgwarden.engine.recovery import journal
from pgwarden.engine.recovery.journal import JournalRun, RecordedBackup
from pgwarden.engine.recovery.locks import is_lock_timeout, retry_on_lock_timeout
from pgwarden.engine.recovery.undo import Restorer
from pgwarden.errors import PgwardenError

if TYPE_CHECKING:
    from pgwarden.engine.migrate.migrate import MigrateOptions

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
T = TypeVar("T")


class Run:
    """A run over one connection that holds the migrator lock; the report is built as it goes."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        url: str,
        plan: MigrationPlan,
        options: MigrateOptions,
        say: Progress,
        *,
        continuing: JournalRun | None = None,
        restorer: Restorer | None = None,
        blockers: BlockerWatch | None = None,
    ) -> None:
        self.conn = conn
        self.blockers = blockers
        """Who holds the locks the run's session waits for, named in each lock retry."""
        self.url = url
        self.plan = plan
        self.options = options
        self.say = say
        self.schema = options.history_schema
        self.phase = "starting"
        self.journal = RunJournal.for_run(self.schema, continuing)
        # A continued run keeps the rollback its dead predecessor promised: its strategy and its backup.
        self.strategy = RollbackStrategy(continuing.strategy) if continuing else options.rollback
        self.restorer = restorer
        self.committed: list[PlannedMigration] = []
        self.partial: PlannedMigration | None = None
        """A file run statement by statement of which some statements took effect before the run failed."""
        self.in_doubt: list[PlannedMigration] = []
        """Migrations whose COMMIT was sent but whose answer was lost with the connection."""
        self.applied: list[AppliedMigration] = []
        self.before: SchemaState | None = None
        self.verification: Verification | None = None
        self._opened: list[psycopg.Connection[Any]] = []
        self.report = MigrationReport(
            outcome=Outcome.SUCCEEDED,
            database=describe(url),
            pending=list(plan.pending),
            baselined=[f.version for f in plan.baselined],
            plan=plan.describe(),
            warnings=list(plan.warnings),
            row_counts=str(options.verify.row_counts),
        )
        if continuing is not None:
            self.report.backup = continuing.backup.info if continuing.backup else None
            if continuing.strategy != str(options.rollback):
                self.report.warnings.append(
                    f"this run continues run {continuing.id}, which chose rollback strategy {continuing.strategy}; "
                    f"it keeps that strategy (not {options.rollback})"
                )

    @property
    def anything_committed(self) -> bool:
        """Whether the database holds work of this run (or of the dead run it continues)."""
        continued = self.journal.continuing
        return bool(self.committed or self.partial or self.in_doubt or (continued and continued.steps))

    def close(self) -> None:
        """Close the connections the run opened itself (reconnects); the caller closes the first one."""
        for conn in self._opened:
            conn.close()

    def adopt(self, conn: psycopg.Connection[Any]) -> None:
        """Carry on over a new connection (a reconnect), closed with the run."""
        self._opened.append(conn)
        self.conn = conn
        if self.blockers is not None:
            self.blockers.follow(conn.info.backend_pid)

    # --- the run -------------------------------------------------------------------------------

    def execute(self) -> MigrationReport:
        try:
            self._take_backup()
            self._apply_groups()
        except (RunFailed, PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
            failure = as_run_failure(
                exc,
                self.phase,
                lock_timeout=self.options.policy.lock_timeout,
                attempts=self.options.policy.lock_attempts,
            )
            failing.fail(self, failure)
        return reporting.finish(self)

    def _take_backup(self) -> None:
        net = self.options.safety_net
        if net is None or not self.plan.steps or self.journal.continuing is not None:
            return  # nothing to back up, or the continued run's backup is the state before it
        self.phase = "taking the pre-migration backup"
        self.say("taking a backup before migrating")
        self.report.backup = net.take()

    def _recorded_backup(self) -> RecordedBackup | None:
        net, backup = self.options.safety_net, self.report.backup
        if net is None or backup is None or self.strategy != RollbackStrategy.RESTORE:
            return None
        return RecordedBackup(storage=net.location, owner=net.owner, info=backup)

    def _apply_groups(self) -> None:
        groups = [list(group) for group in self.plan.groups()] or [[]]
        for index, group in enumerate(groups):
            first, last = index == 0, index == len(groups) - 1
            if not group or group[0].runs_in_transaction:
                self.with_lock_retries(partial(self._transactional_group, group, first=first, last=last))
                continue
            if first:
                self.with_lock_retries(partial(self._transactional_group, [], first=True, last=False))
            for step in group:
                self.applied.append(apply_outside_transaction(self, step))
                self.committed.append(step)
            # Committed on its own, so it is verified right after its COMMIT rather than before.
            self.with_lock_retries(partial(self._transactional_group, [], first=False, last=last))

    def with_lock_retries(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again after each lock timeout within the run's bounds; each timeout is recorded with
        the sessions that held the lock, and running out of attempts fails the run naming them."""

        def watched() -> T:
            if self.blockers is not None:
                self.blockers.clear()
            return attempt()

        attempts = self.options.policy.lock_attempts
        try:
            return retry_on_lock_timeout(
                watched,
                attempts=attempts,
                delays=retry_delays(self.options.policy),
                on_retry=self._note_lock_retry,
            )
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            retry = self._lock_retry(attempts, 0.0, gave_up=True)
            gave_up = as_run_failure(
                exc, self.phase, lock_timeout=self.options.policy.lock_timeout, attempts=attempts
            )
            raise RunFailed(f"{gave_up}; {describe_blockers(retry.blocked_by)}") from exc

    def _lock_retry(self, number: int, delay: float, *, gave_up: bool = False) -> LockRetry:
        blockers = self.blockers.take() if self.blockers is not None else []
        retry = LockRetry(
            phase=self.phase, attempt=number, delay_seconds=delay, blocked_by=blockers, gave_up=gave_up
        )
        self.report.lock_retries.append(retry)
        return retry

    def _note_lock_retry(self, number: int, delay: float, _error: BaseException) -> None:
        retry = self._lock_retry(number, delay)
        self.say(
            f"lock timeout while {self.phase} ({describe_blockers(retry.blocked_by)}); retrying in {delay:.1f}s"
        )
        self.forget_uncommitted()

    def _transactional_group(self, group: list[PlannedMigration], *, first: bool, last: bool) -> None:
        """BEGIN; (before-state, journal); migrations; verification; COMMIT — or ROLLBACK on any failure."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if first:
                self._begin()
            for step in group:
                self.applied.append(apply_in_transaction(self, step))
            gate.verify_before_commit(self, final=last, committing=group)
            if last and self._keeps_a_journal():  # finished in the transaction of the run's last commit
                self.journal.mark(conn, journal.FINISHED, outcome=str(Outcome.SUCCEEDED))
        except BaseException:
            self._rollback_open_transaction()
            self.journal.recorded -= {step.file.version for step in group}
            self.forget_uncommitted()
            raise
        self.phase = "committing " + (", ".join(s.file.version for s in group) or "the verification")
        try:
            conn.execute("COMMIT")
        except psycopg.OperationalError:
            self.in_doubt = list(group)
            raise
        self.journal.opened = self.journal.opened or self._keeps_a_journal()
        self.committed.extend(group)
        pause_point("group-committed")

    def _keeps_a_journal(self) -> bool:
        """A run that changes something keeps a journal row (one with nothing to apply needs none)."""
        return bool(self.plan.steps) or self.journal.continuing is not None

    def _begin(self) -> None:
        """The first transaction: the state before, the history and journal tables, the journal's row."""
        self._capture_before()
        self.phase = "creating the history table"
        history.ensure_tables(self.conn, self.schema)
        if self._keeps_a_journal():
            self.journal.open(
                self.conn,
                strategy=str(self.strategy),
                backup=self._recorded_backup(),
                version_before=self.plan.current_version,
            )
        for file in self.plan.baselined:
            history.record_migration(
                self.conn, **recorded(file), execution_ms=0, kind="BASELINE", schema=self.schema
            )

    def _rollback_open_transaction(self) -> None:
        if self.conn.closed or self.conn.broken:
            return  # the server ends an open transaction with the session
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")

    def forget_uncommitted(self) -> None:
        committed = {step.file.version for step in self.committed}
        self.applied = [a for a in self.applied if a.version in committed]

    def _capture_before(self) -> None:
        self.phase = "counting rows before the run"
        exported = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot_id = str(exported[0]) if exported else None
        self.before = capture_state(
            self.conn,
            self.url,
            mode=self.options.verify.row_counts,
            own_schema=self.schema,
            snapshot_id=snapshot_id,
            concurrency=self.options.count_concurrency,
        )
        self.report.tables.before = len(self.before.tables)
        self.report.rows.before = self.before.total_rows
        self.phase = "reading the recorded schema state"
        recorded_state = history.last_state(self.conn, self.schema)
        # With no recorded state (a first run) there is nothing to drift from: reported as not detected.
        drift = (
            drift_since(recorded_state.snapshot, self.before)
            if recorded_state
            else {"detected": False, "differences": []}
        )
        self.report.drift = self._without_interrupted_work(Drift(**drift))

    def _without_interrupted_work(self, drift: Drift) -> Drift:
        """An index an interrupted run of ours was building is not a change made by hand."""
        ours = {
            statement.concurrent_index.rsplit(".", 1)[-1].strip('"')
            for step in self.plan.steps
            if step.resume is not None
            for statement in step.file.statements
            if statement.concurrent_index
        }
        kept = [
            d
            for d in drift.differences
            if not (d.kind == "index" and d.object.rsplit(".", 1)[-1].strip('"') in ours)
        ]
        return Drift(detected=bool(kept), differences=kept)
