"""Apply a migration plan to a live database, verify before COMMIT, and roll back when anything fails.

The decisions (what is pending, how it is grouped into transactions, what counts as loss) are made by
pure modules; this one only runs SQL in the order they decided and writes down what happened.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.api.policy import MigrationPolicy, RollbackStrategy
from pgwarden.api.reports import (
    AppliedMigration,
    BackupInfo,
    CheckResult,
    Drift,
    ErrorInfo,
    MigrationReport,
    Outcome,
    Verification,
)
from pgwarden.api.verify import RowCountMode, VerifySpec
from pgwarden.engine import history, rollback, verify
from pgwarden.engine.connect import connect, describe
from pgwarden.engine.errors import BadInput
from pgwarden.engine.locking import migrator_lock, retry_on_lock_timeout
from pgwarden.engine.migration_files import (
    InvalidVersion,
    MigrationFile,
    MigrationFilesRefused,
    load_migrations,
)
from pgwarden.engine.plan import AppliedMigration as HistoryEntry
from pgwarden.engine.plan import MigrationPlan, PlannedMigration, PlanRefused, plan_migrations
from pgwarden.engine.redact import redact
from pgwarden.engine.sqlscript import ScriptError, Statement
from pgwarden.engine.state import SchemaState, capture_state, count_tables, drift_since

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MigrateOptions:
    """Everything a run needs besides the database."""

    directory: Path
    target: str | None = None
    baseline: str | None = None
    plan_only: bool = False
    policy: MigrationPolicy = field(default_factory=MigrationPolicy)
    verify: VerifySpec = field(default_factory=VerifySpec)
    rollback: RollbackStrategy = RollbackStrategy.TRANSACTION
    history_schema: str = history.DEFAULT_SCHEMA
    count_concurrency: int = 4
    lock_wait_seconds: float = 600.0
    # Called before anything changes, when a backup is wanted (`--backup-to`); returns what was taken.
    take_backup: Callable[[], BackupInfo] | None = None
    # Called to undo the run from that backup (`--rollback restore`).
    restore_backup: Callable[[BackupInfo], None] | None = None


class RunFailed(Exception):
    """A statement, a migration or the verification failed; carries where, for the report."""

    def __init__(
        self, message: str, *, migration: str | None = None, statement: Statement | None = None
    ) -> None:
        super().__init__(redact(message))
        self.migration = migration
        self.statement = statement

    def to_error(self) -> ErrorInfo:
        return ErrorInfo(
            message=str(self),
            migration=self.migration,
            statement=_excerpt(self.statement.text) if self.statement else None,
            line=self.statement.line if self.statement else None,
        )


class VerificationFailed(RunFailed):
    """A verification item failed; the run is undone."""


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _now() -> datetime:
    return datetime.now(UTC)


def migrate(url: str, options: MigrateOptions, progress: Progress | None = None) -> MigrationReport:
    """Plan and apply pending migrations; refusals raise BadInput before anything changes."""
    say = progress or (lambda _msg: None)
    try:
        files = list(load_migrations(options.directory))
    except (MigrationFilesRefused, ScriptError) as exc:
        raise BadInput(str(exc)) from None
    started = _now()
    with connect(url, autocommit=True) as conn:
        _set_timeouts(conn, options.policy)
        if options.plan_only:
            plan = _plan(conn, files, options)
            report = _plan_report(plan, url)
        else:
            with migrator_lock(conn, options.history_schema, wait_seconds=options.lock_wait_seconds):
                plan = _plan(conn, files, options)
                run = Run(conn, url, plan, options, say)
                try:
                    report = run.execute()
                finally:
                    if run.conn is not conn:
                        run.conn.close()
    completed = _now()
    report.started_at = started.isoformat()
    report.completed_at = completed.isoformat()
    report.duration_seconds = round((completed - started).total_seconds(), 3)
    return report


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_MS = (86_400_000, 3_600_000, 60_000, 1000, 1)


def postgres_timeout(value: str) -> str:
    """A timeout as PostgreSQL reads it: Kubernetes-style `10m`/`1h30m` become milliseconds (PostgreSQL
    would read `m` as an error); PostgreSQL's own forms (`10min`, `500ms`, `0`) pass through."""
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if not text or not match or not any(match.groups()):
        return text
    return f"{sum(int(part or 0) * ms for part, ms in zip(match.groups(), _DURATION_MS, strict=True))}ms"


def _set_timeouts(conn: psycopg.Connection[Any], policy: MigrationPolicy) -> None:
    for setting, value in (
        ("lock_timeout", policy.lock_timeout),
        ("statement_timeout", policy.statement_timeout),
    ):
        try:
            conn.execute(
                sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(postgres_timeout(value)))
            )
        except psycopg.errors.InvalidParameterValue:
            raise BadInput(
                f"{setting} {value!r} is not a duration; use e.g. 5s, 10m, 1h30m or 500ms"
            ) from None


def _plan(
    conn: psycopg.Connection[Any], files: list[MigrationFile], options: MigrateOptions
) -> MigrationPlan:
    rows = history.read_history(conn, options.history_schema)
    entries = [HistoryEntry(r.version, r.description, r.checksum or "", r.success) for r in rows]
    try:
        plan = plan_migrations(
            files,
            entries,
            mode=options.policy.transaction,
            target=options.target,
            baseline=options.baseline,
            allow_destructive=options.policy.allow_destructive,
        )
        plan.raise_if_refused()
    except InvalidVersion as exc:
        raise BadInput(str(exc)) from None
    except PlanRefused as exc:
        raise BadInput(f"refused, nothing was changed:\n{exc}") from None
    return plan


def _plan_report(plan: MigrationPlan, url: str) -> MigrationReport:
    return MigrationReport(
        outcome=Outcome.SUCCEEDED,
        database=describe(url),
        plan_only=True,
        current_version=plan.current_version,
        pending=list(plan.pending),
        baselined=[f.version for f in plan.baselined],
        plan=plan.describe(),
        warnings=list(plan.warnings),
    )


class Run:
    """One migration run: before-state, transactional groups, verification, rollback, report."""

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
        self.committed: list[PlannedMigration] = []
        self.applied: list[AppliedMigration] = []
        self.before: SchemaState | None = None
        self.verification: Verification | None = None
        self.report = MigrationReport(
            outcome=Outcome.SUCCEEDED,
            database=describe(url),
            pending=list(plan.pending),
            baselined=[f.version for f in plan.baselined],
            plan=plan.describe(),
            warnings=list(plan.warnings),
            row_counts=str(options.verify.row_counts),
        )

    # --- the run -------------------------------------------------------------------------------

    def execute(self) -> MigrationReport:
        if self.options.take_backup is not None and self.plan.steps:
            self.say("taking a backup before migrating")
            self.report.backup = self.options.take_backup()
        groups = self._groups()
        try:
            for index, group in enumerate(groups):
                is_first, is_last = index == 0, index == len(groups) - 1
                if not group or group[0].runs_in_transaction:
                    retry_on_lock_timeout(
                        partial(self._transactional_group, group, first=is_first, last=is_last),
                        on_retry=self._forget_uncommitted,
                    )
                else:
                    if is_first:
                        self._transactional_group([], first=True, last=False)
                    self._non_transactional_group(group)
                    if is_last:
                        self._transactional_group([], first=False, last=True)
        except RunFailed as failure:
            self._fail(failure)
        return self._finish()

    def _groups(self) -> list[list[PlannedMigration]]:
        return [list(group) for group in self.plan.groups()] or [[]]

    def _transactional_group(self, group: list[PlannedMigration], *, first: bool, last: bool) -> None:
        """BEGIN; (before-state); migrations; (verification, recorded state); COMMIT — or ROLLBACK on failure."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if first:
                self._capture_before()
                history.ensure_tables(conn, self.schema)
                self._record_baseline()
            for step in group:
                self._apply(step)
            if last:
                self._verify_and_record()
        except BaseException:
            conn.execute("ROLLBACK")
            self._forget_uncommitted()
            raise
        conn.execute("COMMIT")
        self.committed.extend(group)

    def _forget_uncommitted(self) -> None:
        committed = {step.file.version for step in self.committed}
        self.applied = [a for a in self.applied if a.version in committed]

    def _capture_before(self) -> None:
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
        recorded = history.last_state(self.conn, self.schema)
        # With no recorded state (a first run) there is nothing to drift from: reported as not detected.
        drift = (
            drift_since(recorded.snapshot, self.before)
            if recorded
            else {"detected": False, "differences": []}
        )
        self.report.drift = Drift(**drift)

    def _record_baseline(self) -> None:
        for file in self.plan.baselined:
            history.record_migration(
                self.conn,
                version=file.version,
                description=file.description,
                script=file.script_name,
                checksum=file.checksum,
                execution_ms=0,
                kind="BASELINE",
                schema=self.schema,
            )

    def _apply(self, step: PlannedMigration) -> None:
        file = step.file
        self.say(f"applying {file.version} {file.description}")
        started = time.monotonic()
        for statement in file.statements:
            self._run_statement(file, statement, in_transaction=step.runs_in_transaction)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        history.record_migration(
            self.conn,
            version=file.version,
            description=file.description,
            script=file.script_name,
            checksum=file.checksum,
            execution_ms=elapsed_ms,
            schema=self.schema,
        )
        self.applied.append(
            AppliedMigration(
                version=file.version,
                description=file.description,
                checksum=file.checksum,
                duration_ms=elapsed_ms,
                transactional=step.runs_in_transaction,
            )
        )

    def _run_statement(self, file: MigrationFile, statement: Statement, *, in_transaction: bool) -> None:
        try:
            if in_transaction:
                self.conn.execute(statement.text)
            else:
                retry_on_lock_timeout(lambda: self.conn.execute(statement.text))
        except psycopg.errors.LockNotAvailable:
            raise
        except psycopg.Error as exc:
            if not in_transaction and (statement.concurrent_index or statement.concurrent_index_table):
                self._drop_invalid_indexes(statement)
            where = f"{file.script_name}:{statement.line}"
            raise RunFailed(
                f"migration {file.version} failed at {where}: {_pg_message(exc)}",
                migration=file.version,
                statement=statement,
            ) from None

    def _drop_invalid_indexes(self, statement: Statement) -> None:
        """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind; remove it."""
        if statement.concurrent_index:
            query = "SELECT indexrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid"
            target = statement.concurrent_index
        else:
            query = "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass(%s) AND NOT indisvalid"
            target = statement.concurrent_index_table or ""
        for (index,) in self.conn.execute(query, (target,)).fetchall():
            log.info("dropping the INVALID index %s left by the failed statement", index)
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(str(index))))

    def _non_transactional_group(self, group: list[PlannedMigration]) -> None:
        for step in group:
            self._apply(step)
            self.committed.append(step)

    def _verify_and_record(self) -> None:
        """Counts, expectations and checks inside the open transaction; record the new schema state."""
        spec = self.options.verify
        after = capture_state(
            self.conn, self.url, mode=spec.row_counts, own_schema=self.schema, in_transaction=True
        )
        self.report.tables.after = len(after.tables)
        self.report.rows.after = after.total_rows
        results: list[CheckResult] = []
        if self.before is not None and spec.row_counts != RowCountMode.NONE:
            changes = verify.row_changes(self.before.row_counts, after.row_counts, spec.allow_row_loss_in)
            self.report.row_changes = changes
            if spec.row_counts == RowCountMode.EXACT:
                results.append(verify.row_loss_check(changes))
        results.extend(verify.expectation_checks(self.conn, spec.expect))
        results.extend(verify.run_check(self.conn, check) for check in spec.checks)
        passed = all(r.passed for r in results)
        self.verification = Verification(passed=passed, checks=results)
        if not passed:
            failed = "; ".join(
                r.message or f"{r.name}: expected {r.expected}, got {r.actual}"
                for r in results
                if not r.passed
            )
            raise VerificationFailed(f"verification failed: {failed}")
        if not self.plan.steps and not self.plan.baselined:
            return  # nothing changed: keep the recorded state, so drift stays visible until the next change
        history.record_state(
            self.conn,
            fingerprint=after.fingerprint,
            snapshot=after.snapshot_json,
            version=self._version_after_success(),
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
        committed = [step.file for step in self.committed]
        if not committed:
            result = rollback.nothing_committed(strategy)
        elif strategy == RollbackStrategy.DOWN:
            result = rollback.undo_with_down_scripts(self.conn, committed, self.schema, self.say)
        elif strategy == RollbackStrategy.RESTORE:
            self.conn.close()  # the database is replaced: no session of ours may stay on it
            result = rollback.undo_with_backup(self.report.backup, self.options.restore_backup, self.say)
            self.conn = connect(self.url, autocommit=True)
        else:
            result = rollback.left_applied(strategy, [f.version for f in committed])
        result.version_after = self._live_version()
        self.report.rollback = result
        self.report.outcome = rollback.run_outcome(bool(committed), result)

    def _live_version(self) -> str | None:
        try:
            return history.current_version(history.read_history(self.conn, self.schema))
        except psycopg.Error:
            return None

    # --- the report ----------------------------------------------------------------------------

    def _finish(self) -> MigrationReport:
        report = self.report
        report.applied = self.applied if report.outcome == Outcome.SUCCEEDED else self._committed_applied()
        report.verification = self.verification
        report.current_version = self._live_version()
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
        """Count what the database holds after the failure and its rollback."""
        spec = self.options.verify
        tables = count_tables(self.conn, self.url, mode=spec.row_counts, own_schema=self.schema)
        self.report.tables.after = len(tables)
        if spec.row_counts == RowCountMode.NONE:
            self.report.rows.after = None
            return
        self.report.rows.after = sum(tables.values())
        if self.before is not None:  # changes against what the database holds now, not the undone transaction
            self.report.row_changes = verify.row_changes(
                self.before.row_counts, tables, spec.allow_row_loss_in
            )


def _pg_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        message += f" ({diag.message_detail})"
    return redact(message)
