"""One migration run: before-state, transactional groups, verification before every COMMIT, rollback, report.

Every COMMIT is preceded by the verification of what it commits: the row-loss check before each one, and
expectations and checks before the last. A statement that cannot run in a transaction commits on its own,
so it is verified right after it (the plan says so). Whatever ends the run — a failed statement, a lock
or statement timeout, a lost connection, SIGTERM — goes through `_fail`, so the rollback strategy runs
and the report says which version the database is at.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import (
    AppliedMigration,
    CheckResult,
    Drift,
    LockRetry,
    MigrationReport,
    Outcome,
    RollbackOutcome,
    RollbackResult,
    Verification,
)
from pgwarden.api.verify import RowCountMode
from pgwarden.engine.migrate import history, rollback, verify
from pgwarden.engine.migrate.failures import RunFailed, VerificationFailed, as_run_failure
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.migrate.locking import lock_key, retry_on_lock_timeout
from pgwarden.engine.migrate.plan import MigrationPlan, PlannedMigration
from pgwarden.engine.migrate.sqlscript import Statement
from pgwarden.engine.migrate.statements import RunningStatement
from pgwarden.engine.postgres.connect import connect, describe
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.engine.postgres.state import SchemaState, capture_state, count_tables, drift_since
from pgwarden.errors import PgwardenError

if TYPE_CHECKING:
    from pgwarden.engine.migrate.migrate import MigrateOptions

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
T = TypeVar("T")
RECONNECT_ATTEMPTS = 3

_INVALID_INDEX_NAMED = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid"
)
_INVALID_INDEXES_OF_TABLE = (
    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass(%s) AND NOT indisvalid"
)


class _Recorded(TypedDict):
    version: str
    description: str
    script: str
    checksum: str


def _recorded(file: MigrationFile) -> _Recorded:
    """What every history row says of the file it is about."""
    return _Recorded(
        version=file.version, description=file.description, script=file.script_name, checksum=file.checksum
    )


class Run:
    """A run over one connection that holds the migrator lock; the report is built as it goes."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        url: str,
        plan: MigrationPlan,
        options: MigrateOptions,
        say: Progress,
    ) -> None:
        self.conn = conn
        self.url = url
        self.plan = plan
        self.options = options
        self.say = say
        self.schema = options.history_schema
        self.phase = "starting"
        self.committed: list[PlannedMigration] = []
        self.in_doubt: list[PlannedMigration] = []
        """Migrations whose COMMIT was sent but whose answer was lost with the connection."""
        self.applied: list[AppliedMigration] = []
        self.before: SchemaState | None = None
        self.verification: Verification | None = None
        self.interrupted: set[str] = set()
        """Versions a killed run started outside a transaction and never finished: they may have taken effect."""
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

    def close(self) -> None:
        """Close the connections the run opened itself (reconnects); the caller closes the first one."""
        for conn in self._opened:
            conn.close()

    # --- the run -------------------------------------------------------------------------------

    def execute(self) -> MigrationReport:
        try:
            self._take_backup()
            self._apply_groups()
        except (RunFailed, PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
            self._fail(
                as_run_failure(
                    exc,
                    self.phase,
                    lock_timeout=self.options.policy.lock_timeout,
                    attempts=self.options.lock_attempts,
                )
            )
        return self._finish()

    def _take_backup(self) -> None:
        net = self.options.safety_net
        if net is not None and self.plan.steps:
            self.phase = "taking the pre-migration backup"
            self.say("taking a backup before migrating")
            self.report.backup = net.take()

    def _apply_groups(self) -> None:
        groups = [list(group) for group in self.plan.groups()] or [[]]
        for index, group in enumerate(groups):
            first, last = index == 0, index == len(groups) - 1
            if not group or group[0].runs_in_transaction:
                self._with_lock_retries(partial(self._transactional_group, group, first=first, last=last))
                continue
            if first:
                self._with_lock_retries(partial(self._transactional_group, [], first=True, last=False))
            self._non_transactional_group(group)
            # Committed on its own, so it is verified right after its COMMIT rather than before.
            self._with_lock_retries(partial(self._transactional_group, [], first=False, last=last))

    def _with_lock_retries(self, attempt: Callable[[], T]) -> T:
        return retry_on_lock_timeout(
            attempt, attempts=self.options.lock_attempts, on_retry=self._note_lock_retry
        )

    def _note_lock_retry(self, number: int, delay: float, _error: BaseException) -> None:
        self.report.lock_retries.append(LockRetry(phase=self.phase, attempt=number, delay_seconds=delay))
        self.say(f"lock timeout while {self.phase}; retrying in {delay:.1f}s")
        self._forget_uncommitted()

    def _transactional_group(self, group: list[PlannedMigration], *, first: bool, last: bool) -> None:
        """BEGIN; (before-state); migrations; verification; COMMIT — or ROLLBACK on any failure."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if first:
                self._capture_before()
                self.phase = "creating the history table"
                history.ensure_tables(conn, self.schema)
                self._record_baseline()
            for step in group:
                self._apply(step)
            self._verify(final=last, committing=group)
        except BaseException:
            self._rollback_open_transaction()
            self._forget_uncommitted()
            raise
        self.phase = "committing " + (", ".join(s.file.version for s in group) or "the verification")
        try:
            conn.execute("COMMIT")
        except psycopg.OperationalError:
            self.in_doubt = list(group)
            raise
        self.committed.extend(group)

    def _rollback_open_transaction(self) -> None:
        if self.conn.closed or self.conn.broken:
            return  # the server ends an open transaction with the session
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")

    def _forget_uncommitted(self) -> None:
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
        self.interrupted = history.interrupted(history.read_history(self.conn, self.schema))
        recorded = history.last_state(self.conn, self.schema)
        # With no recorded state (a first run) there is nothing to drift from: reported as not detected.
        drift = (
            drift_since(recorded.snapshot, self.before)
            if recorded
            else {"detected": False, "differences": []}
        )
        self.report.drift = self._without_interrupted_work(Drift(**drift))

    def _without_interrupted_work(self, drift: Drift) -> Drift:
        """An index an interrupted run of ours was building is not a change made by hand."""
        ours = {
            statement.concurrent_index.rsplit(".", 1)[-1]
            for step in self.plan.steps
            if step.file.version in self.interrupted
            for statement in step.file.statements
            if statement.concurrent_index
        }
        kept = [
            d for d in drift.differences if not (d.kind == "index" and d.object.rsplit(".", 1)[-1] in ours)
        ]
        return Drift(detected=bool(kept), differences=kept)

    def _record_baseline(self) -> None:
        for file in self.plan.baselined:
            history.record_migration(
                self.conn,
                **_recorded(file),
                execution_ms=0,
                kind="BASELINE",
                schema=self.schema,
            )

    def _apply(self, step: PlannedMigration) -> None:
        file = step.file
        self.phase = f"applying {file.version} ({file.script_name})"
        self.say(f"applying {file.version} {file.description}")
        started = time.monotonic()
        if step.runs_in_transaction:
            for statement in file.statements:
                self._run_in_transaction(file, statement)
            elapsed_ms = int((time.monotonic() - started) * 1000)
            self.phase = f"recording {file.version} in the history"
            history.record_migration(
                self.conn,
                **_recorded(file),
                execution_ms=elapsed_ms,
                schema=self.schema,
            )
        else:
            elapsed_ms = self._apply_outside_transaction(file)
        self.applied.append(
            AppliedMigration(
                version=file.version,
                description=file.description,
                checksum=file.checksum,
                duration_ms=elapsed_ms,
                transactional=step.runs_in_transaction,
            )
        )

    def _apply_outside_transaction(self, file: MigrationFile) -> int:
        """A file whose one statement commits on its own, bracketed by history rows: `started` before it,
        its outcome after, so a run killed in between leaves a history that says so and a rerun resumes."""
        resumed = file.version in self.interrupted
        if not resumed:
            history.record_started(
                self.conn,
                **_recorded(file),
                schema=self.schema,
            )
        started = time.monotonic()
        try:
            for statement in file.statements:
                self._run_outside_transaction(file, statement, resumed=resumed)
        except BaseException as exc:
            elapsed_ms = int((time.monotonic() - started) * 1000)
            if not (self.conn.closed or self.conn.broken):
                with contextlib.suppress(psycopg.Error):
                    history.finish_started(
                        self.conn,
                        file.version,
                        execution_ms=elapsed_ms,
                        error=str(exc) or type(exc).__name__,
                        schema=self.schema,
                    )
            raise
        elapsed_ms = int((time.monotonic() - started) * 1000)
        self.phase = f"recording {file.version} in the history"
        history.finish_started(self.conn, file.version, execution_ms=elapsed_ms, schema=self.schema)
        return elapsed_ms

    def _execute(self, file: MigrationFile, statement: Statement) -> None:
        """Run one statement of a migration, telling the run's observers when it starts and ends."""
        observers = self.options.observers
        if not observers:
            self.conn.execute(statement.text)
            return
        running = RunningStatement(
            version=file.version,
            script=file.script_name,
            line=statement.line,
            text=statement.text,
            pid=self.conn.info.backend_pid,
        )
        for observer in observers:
            observer.started(running)
        try:
            self.conn.execute(statement.text)
        finally:
            for observer in observers:
                observer.finished(running)

    def _run_in_transaction(self, file: MigrationFile, statement: Statement) -> None:
        try:
            self._execute(file, statement)
        except pgerrors.LockNotAvailable:
            raise  # the whole group is retried with backoff
        except psycopg.Error as exc:
            raise self._statement_failure(file, statement, exc) from exc

    def _run_outside_transaction(self, file: MigrationFile, statement: Statement, *, resumed: bool) -> None:
        """Run a statement that commits on its own. An INVALID index it leaves (or an interrupted earlier
        try of it left under the same name) is dropped, so a retry or a rerun starts clean; for an unnamed
        index only the INVALID indexes that were not there before are ours to drop."""
        if resumed and self._built_by_interrupted_run(statement):
            self.say(
                f"{file.script_name}: index {statement.concurrent_index} was built by the interrupted run"
            )
            return
        existing = set() if statement.concurrent_index else self._invalid_left_by(statement)

        def attempt() -> None:
            self._drop_indexes(self._invalid_left_by(statement) - existing)
            self._execute(file, statement)

        try:
            self._with_lock_retries(attempt)
        except BaseException as exc:
            with contextlib.suppress(psycopg.Error):
                self._drop_indexes(self._invalid_left_by(statement) - existing)
            if isinstance(exc, psycopg.Error) and not isinstance(exc, pgerrors.LockNotAvailable):
                raise self._statement_failure(file, statement, exc) from exc
            raise

    def _built_by_interrupted_run(self, statement: Statement) -> bool:
        """A killed run's server session can finish CREATE INDEX CONCURRENTLY after the client is gone."""
        if not statement.concurrent_index:
            return False
        row = self.conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            (statement.concurrent_index,),
        ).fetchone()
        return bool(row and row[0])

    def _invalid_left_by(self, statement: Statement) -> set[str]:
        """The INVALID index a CREATE INDEX CONCURRENTLY names, or every INVALID index of its table."""
        if self.conn.closed or self.conn.broken:
            return set()
        if statement.concurrent_index:
            query, target = _INVALID_INDEX_NAMED, statement.concurrent_index
        elif statement.concurrent_index_table:
            query, target = _INVALID_INDEXES_OF_TABLE, statement.concurrent_index_table
        else:
            return set()
        return {str(row[0]) for row in self.conn.execute(query, (target,)).fetchall()}

    def _drop_indexes(self, indexes: set[str]) -> None:
        for index in sorted(indexes):
            log.info("dropping the INVALID index %s left by a failed CREATE INDEX CONCURRENTLY", index)
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(index)))

    def _statement_failure(self, file: MigrationFile, statement: Statement, exc: psycopg.Error) -> RunFailed:
        where = f"{file.script_name}:{statement.line}"
        cause = as_run_failure(
            exc,
            f"migration {file.version} failed at {where}",
            lock_timeout=self.options.policy.lock_timeout,
            attempts=self.options.lock_attempts,
        )
        message = str(cause)
        if (
            not cause.connection_lost
            and isinstance(exc, psycopg.Error)
            and not isinstance(exc, pgerrors.QueryCanceled)
        ):
            message = f"migration {file.version} failed at {where}: {describe_error(exc)}"
        return RunFailed(
            message, migration=file.version, statement=statement, connection_lost=cause.connection_lost
        )

    def _non_transactional_group(self, group: list[PlannedMigration]) -> None:
        for step in group:
            self._apply(step)
            self.committed.append(step)

    # --- verification --------------------------------------------------------------------------

    def _verify(self, *, final: bool, committing: list[PlannedMigration]) -> None:
        """Inside the open transaction: the row-loss check before every COMMIT; expectations and checks
        before the last one. The last one also records the new schema state."""
        spec = self.options.verify
        self.phase = "verifying before COMMIT"
        after = capture_state(
            self.conn, self.url, mode=spec.row_counts, own_schema=self.schema, in_transaction=True
        )
        results: list[CheckResult] = []
        changes = None
        if self.before is not None and spec.row_counts != RowCountMode.NONE:
            changes = verify.row_changes(self.before.row_counts, after.row_counts, spec.allow_row_loss_in)
            if spec.row_counts == RowCountMode.EXACT:
                results.append(verify.row_loss_check(changes))
        if final:
            self.phase = "verifying expectations and checks before COMMIT"
            results.extend(verify.expectation_checks(self.conn, spec.expect))
            results.extend(verify.run_check(self.conn, check) for check in spec.checks)
        passed = all(r.passed for r in results)
        if final or not passed:
            self.report.tables.after = len(after.tables)
            self.report.rows.after = after.total_rows
            if changes is not None:
                self.report.row_changes = changes
            self.verification = Verification(passed=passed, checks=results)
        if not passed:
            failed = "; ".join(
                r.message or f"{r.name}: expected {r.expected}, got {r.actual}"
                for r in results
                if not r.passed
            )
            versions = ", ".join(s.file.version for s in committing)
            before_what = f"before committing {versions}" if versions else "after the last commit"
            raise VerificationFailed(f"verification failed {before_what}: {failed}")
        done = [s.file.version for s in [*self.committed, *committing]]
        if not done and not (final and self.plan.baselined):
            return  # nothing changed: keep the recorded state, so drift stays visible until the next change
        # After every commit, not only the last: an interrupted run's own changes are not drift on the rerun.
        history.record_state(
            self.conn,
            fingerprint=after.fingerprint,
            snapshot=after.snapshot_json,
            version=self._version_after_success() if final else done[-1],
            schema=self.schema,
        )

    def _version_after_success(self) -> str | None:
        versions = [s.file.version for s in self.plan.steps] or [f.version for f in self.plan.baselined]
        return versions[-1] if versions else self.plan.current_version

    # --- failure and rollback ------------------------------------------------------------------

    def _fail(self, failure: RunFailed) -> None:
        self.say(f"failed: {failure}")
        self.report.error = failure.to_error()
        strategy = self.options.rollback
        if not self._reconnect_if_lost():
            result = rollback.unreachable(
                strategy, [s.file.version for s in self.committed], [s.file.version for s in self.in_doubt]
            )
        else:
            self._settle_in_doubt()
            try:
                result = self._undo(strategy)
            except KeyboardInterrupt as exc:  # SIGTERM arriving during the rollback itself
                result = RollbackResult(
                    strategy=str(strategy),
                    outcome=RollbackOutcome.FAILED,
                    message=f"the rollback was interrupted ({exc or 'Ctrl-C'}); the report's version is what the "
                    "history says now",
                )
                self._reconnect_if_lost()
        result.version_after = self._known_version()
        self.report.rollback = result
        self.report.outcome = rollback.run_outcome(bool(self.committed or self.in_doubt), result)

    def _undo(self, strategy: RollbackStrategy) -> RollbackResult:
        committed = [step.file for step in self.committed]
        self.phase = f"rolling back ({strategy})"
        if not committed:
            return rollback.nothing_committed(strategy)
        if strategy == RollbackStrategy.DOWN:
            result = rollback.undo_with_down_scripts(self.conn, committed, self.schema, self.say)
            self._record_state_after_rollback()
            return result
        if strategy == RollbackStrategy.RESTORE:
            net, backup = self.options.safety_net, self.report.backup
            if net is None or backup is None:
                return rollback.no_backup()
            # The database is replaced: no session of ours may stay on it. The maintenance-database lock
            # keeps other migrators out meanwhile.
            self.conn.close()
            result = net.restore(backup, self.say)
            self._reconnect_if_lost()
            return result
        return rollback.left_applied(strategy, [f.version for f in committed])

    def _record_state_after_rollback(self) -> None:
        """Down scripts changed the schema after the last recorded state: record it again, so the next run
        does not report the undone changes as drift."""
        try:
            state = capture_state(self.conn, self.url, mode=RowCountMode.NONE, own_schema=self.schema)
            version = history.current_version(history.read_history(self.conn, self.schema))
            history.record_state(
                self.conn,
                fingerprint=state.fingerprint,
                snapshot=state.snapshot_json,
                version=version,
                schema=self.schema,
            )
        except (PgwardenError, psycopg.Error) as exc:
            self.report.warnings.append(f"could not record the schema after the rollback: {exc}")

    def _reconnect_if_lost(self) -> bool:
        """A usable connection for the rollback and the report: the run's own, or a new one."""
        if not (self.conn.closed or self.conn.broken):
            return True
        for attempt in range(RECONNECT_ATTEMPTS):
            try:
                conn = connect(self.url, autocommit=True, connect_timeout=5)
            except PgwardenError as exc:
                log.info("reconnecting failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(1.0)
                continue
            self._opened.append(conn)
            self.conn = conn
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.schema),))
            return True
        return False

    def _settle_in_doubt(self) -> None:
        """Whether a COMMIT whose answer was lost happened, read back from the history it wrote."""
        if not self.in_doubt:
            return
        try:
            recorded = {row.version for row in history.read_history(self.conn, self.schema) if row.success}
        except psycopg.Error:
            return
        if all(step.file.version in recorded for step in self.in_doubt):
            self.committed.extend(self.in_doubt)
        self.in_doubt = []

    def _known_version(self) -> str | None:
        """The version the database is at: read back when possible, else what the run knows it committed."""
        if not (self.conn.closed or self.conn.broken):
            try:
                return history.current_version(history.read_history(self.conn, self.schema))
            except psycopg.Error:
                pass
        if self.in_doubt:
            return None  # unknown: the report says so
        if self.committed:
            return self.committed[-1].file.version
        return self.plan.current_version

    # --- the report ----------------------------------------------------------------------------

    def _finish(self) -> MigrationReport:
        report = self.report
        report.applied = self.applied if report.outcome == Outcome.SUCCEEDED else self._committed_applied()
        report.verification = self.verification
        report.current_version = (
            report.rollback.version_after if report.rollback is not None else self._known_version()
        )
        applied_versions = {a.version for a in report.applied}
        report.pending = [v for v in self.plan.pending if v not in applied_versions]
        if report.outcome != Outcome.SUCCEEDED:
            self._count_after_failure()
        elif report.rows.after is None:
            report.tables.after = report.tables.before
            report.rows.after = report.rows.before
        return report

    def _committed_applied(self) -> list[AppliedMigration]:
        if self.report.outcome == Outcome.ROLLED_BACK:
            return []
        committed = {s.file.version for s in self.committed}
        return [a for a in self.applied if a.version in committed]

    def _count_after_failure(self) -> None:
        """Count what the database holds after the failure and its rollback (when it can be reached)."""
        if self.conn.closed or self.conn.broken:
            self.report.tables.after = self.report.rows.after = None
            return
        spec = self.options.verify
        try:
            tables = count_tables(self.conn, self.url, mode=spec.row_counts, own_schema=self.schema)
        except (PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
            reason = str(exc) or "interrupted"
            self.report.warnings.append(f"could not count the tables after the failure: {reason}")
            self.report.tables.after = self.report.rows.after = None
            return
        self.report.tables.after = len(tables)
        if spec.row_counts == RowCountMode.NONE:
            self.report.rows.after = None
            return
        self.report.rows.after = sum(tables.values())
        if self.before is not None:  # changes against what the database holds now, not the undone transaction
            self.report.row_changes = verify.row_changes(
                self.before.row_counts, tables, spec.allow_row_loss_in
            )
