"""Apply a migration plan to a live database, verify before every COMMIT, and roll back when anything fails.

The decisions (what is pending, how it is grouped into transactions, what counts as loss) are made by
pure modules; `migration_run` runs SQL in the order they decided. This module checks the input, takes
the migrator locks and turns whatever ends a run early into a report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgwarden.api.durations import milliseconds
from pgwarden.api.policy import MigrationPolicy, RollbackStrategy
from pgwarden.api.reports import (
    BackupInfo,
    ErrorInfo,
    LockRetry,
    MigrationReport,
    Outcome,
    Rehearsal,
    RollbackResult,
)
from pgwarden.api.verify import VerifySpec
from pgwarden.engine.migrate import history, rollback, verify
from pgwarden.engine.migrate.failures import as_run_failure
from pgwarden.engine.migrate.files import (
    InvalidVersion,
    MigrationFile,
    MigrationFilesRefused,
    load_migrations,
)
from pgwarden.engine.migrate.lint import LintResult, lint_migrations, refusal_message
from pgwarden.engine.migrate.locking import migrator_lock, retry_on_lock_timeout
from pgwarden.engine.migrate.plan import AppliedMigration as HistoryEntry
from pgwarden.engine.migrate.plan import MigrationPlan, PlanRefused, plan_migrations
from pgwarden.engine.migrate.progress import (
    REPORT_AFTER,
    REPORT_EVERY,
    OnProgress,
    ProgressWatch,
    StatementProgress,
)
from pgwarden.engine.migrate.rehearsal import RehearsalOptions, rehearse
from pgwarden.engine.migrate.run import Run
from pgwarden.engine.migrate.sqlscript import ScriptError
from pgwarden.engine.migrate.statements import StatementObserver
from pgwarden.engine.postgres.connect import connect, database_name, describe, with_database, with_settings
from pgwarden.errors import BadInput, DatabaseUnavailable, PgwardenError

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
MAINTENANCE_DATABASE = "postgres"


class SafetyNet(Protocol):
    """The pre-migration backup (`--backup-to`) and the restore that undoes a run from it."""

    def preflight(self, strategy: RollbackStrategy) -> None:
        """Raise BadInput, before anything changes, when the strategy could not work here."""

    def take(self) -> BackupInfo:
        """Take the backup; raise PgwardenError when it fails (nothing is migrated then)."""

    def restore(self, backup: BackupInfo, say: Callable[[str], None]) -> RollbackResult:
        """Put the database back as the backup holds it; the result says what state it is in."""


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
    lock_attempts: int = 5
    safety_net: SafetyNet | None = None
    lint_fail_on: tuple[str, ...] = ()
    """squawk rules that refuse the run (exit 2) when a pending migration breaks them."""
    observers: tuple[StatementObserver, ...] = ()
    """Told when each migration statement starts and ends: lock sampling, progress of long statements."""
    rehearsal: RehearsalOptions | None = None
    """Rehearse the run on a scratch copy restored from a backup first; a failed rehearsal stops it."""
    on_progress: OnProgress | None = None
    """Gets the progress of every statement running longer than `progress_after` seconds, every
    `progress_every` seconds (the operator's hook for status); without it, progress lines go to `progress`."""
    progress_after: float = REPORT_AFTER
    progress_every: float = REPORT_EVERY


def _now() -> datetime:
    return datetime.now(UTC)


def migrate(url: str, options: MigrateOptions, progress: Progress | None = None) -> MigrationReport:
    """Plan and apply pending migrations; refusals raise BadInput before anything changes, and every other
    failure ends in a report that says what was undone and which version the database is at."""
    say = progress or (lambda _msg: None)
    files = _load(options)
    started = _now()
    if options.plan_only:
        with connect(url, autocommit=True) as conn:
            _set_timeouts(conn, options.policy)
            plan = _plan(conn, files, options)
            report = _plan_report(plan, url, _lint(conn, plan, options))
    else:
        _check_rollback(options)
        if options.rehearsal is not None:
            report = _rehearse_then_run(url, files, options, say)
        else:
            report = _run(url, files, options, say)
    completed = _now()
    report.started_at = started.isoformat()
    report.completed_at = completed.isoformat()
    report.duration_seconds = round((completed - started).total_seconds(), 3)
    return report


def _load(options: MigrateOptions) -> list[MigrationFile]:
    try:
        files = list(load_migrations(options.directory))
    except (MigrationFilesRefused, ScriptError) as exc:
        raise BadInput(str(exc)) from exc
    refused = verify.refused_checks(options.verify)
    if refused:
        listed = "\n".join(f"  {reason}" for reason in refused)
        raise BadInput(f"verification checks refused, nothing was changed:\n{listed}")
    return files


def _rehearse_then_run(
    url: str, files: list[MigrationFile], options: MigrateOptions, say: Progress
) -> MigrationReport:
    """Plan and lint on the real database (read only), rehearse on a scratch copy, and run for real only
    when the rehearsal succeeded; otherwise the real database is never touched."""
    assert options.rehearsal is not None
    with connect(url, autocommit=True) as conn:
        _set_timeouts(conn, options.policy)
        plan = _plan(conn, files, options)
        _lint(conn, plan, options)
    rehearsing = for_rehearsal(options)

    def run_plan(scratch_url: str, observers: tuple[StatementObserver, ...]) -> MigrationReport:
        watched = dataclasses.replace(rehearsing, observers=(*options.observers, *observers))
        return _run(scratch_url, files, watched, lambda message: say(f"rehearsal: {message}"))

    rehearsed = rehearse(url, options.rehearsal, run_plan, say)
    if rehearsed.outcome == Outcome.SUCCEEDED:
        say("rehearsal succeeded; migrating the database")
        report = _run(url, files, options, say)
    else:
        report = _stopped_by(rehearsed, plan, url, options)
        say(f"failed: {report.error.message if report.error else 'the rehearsal failed'}")
    report.rehearsal = rehearsed
    return report


def for_rehearsal(options: MigrateOptions) -> MigrateOptions:
    """The options of the same run on a scratch copy, which is thrown away: no backup of it, no restore of it
    (a restore rollback becomes a transaction one), and no rehearsal of the rehearsal."""
    return dataclasses.replace(
        options,
        safety_net=None,
        rollback=RollbackStrategy.TRANSACTION
        if options.rollback == RollbackStrategy.RESTORE
        else options.rollback,
        rehearsal=None,
    )


def _stopped_by(
    rehearsed: Rehearsal, plan: MigrationPlan, url: str, options: MigrateOptions
) -> MigrationReport:
    """The report of a run a failed rehearsal kept from starting: nothing changed (pure)."""
    reason = rehearsed.error.message if rehearsed.error else "the rehearsal failed"
    return MigrationReport(
        outcome=Outcome.ROLLED_BACK,
        database=describe(url),
        current_version=plan.current_version,
        pending=list(plan.pending),
        plan=plan.describe(),
        rollback=rollback.nothing_started(options.rollback),
        error=ErrorInfo(
            message=f"{reason}; the real run did not start and the database was not touched",
            migration=rehearsed.error.migration if rehearsed.error else None,
        ),
    )


def _check_rollback(options: MigrateOptions) -> None:
    if options.rollback == RollbackStrategy.RESTORE and options.safety_net is None:
        raise BadInput("rollback strategy restore needs a pre-migration backup (--backup-to URI)")
    if options.safety_net is not None:
        options.safety_net.preflight(options.rollback)


def _run(url: str, files: list[MigrationFile], options: MigrateOptions, say: Progress) -> MigrationReport:
    """Lock, plan and run; a failure before the run starts changes nothing and is reported as such."""
    phase = "connecting"
    run: Run | None = None
    retries: list[LockRetry] = []

    def note_retry(number: int, delay: float, _error: BaseException) -> None:
        retries.append(LockRetry(phase=phase, attempt=number, delay_seconds=delay))

    try:
        with _maintenance_lock(url, options), connect(url, autocommit=True) as conn:
            _set_timeouts(conn, options.policy)
            phase = "waiting for the migrator lock"
            with migrator_lock(conn, options.history_schema, wait_seconds=options.lock_wait_seconds):
                phase = "reading the history"
                plan = retry_on_lock_timeout(
                    lambda: _plan(conn, files, options), attempts=options.lock_attempts, on_retry=note_retry
                )
                phase = "linting the pending migrations"
                linted = _lint(conn, plan, options)
                watch = _progress_watch(url, options, say)
                watched = dataclasses.replace(options, observers=(*options.observers, watch))
                run = Run(conn, _session_url(url, options.policy), plan, watched, say)
                run.report.lock_retries.extend(retries)
                run.report.lint = list(linted.findings)
                run.report.warnings.extend(linted.warnings)
                try:
                    with watch:
                        return run.execute()
                finally:
                    run.close()
    except BadInput:
        raise
    except (PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
        if run is not None:
            raise  # the run reports its own failures; what escapes it is a failure of the report itself
        failure = as_run_failure(
            exc, phase, lock_timeout=options.policy.lock_timeout, attempts=options.lock_attempts
        )
        say(f"failed: {failure}")
        return MigrationReport(
            # Nothing was changed: RolledBack says so, unless the database was never reached at all.
            outcome=Outcome.FAILED if isinstance(exc, DatabaseUnavailable) else Outcome.ROLLED_BACK,
            database=describe(url),
            rollback=rollback.nothing_started(options.rollback),
            error=failure.to_error(),
            lock_retries=retries,
            current_version=_version_or_none(_session_url(url, options.policy), options.history_schema),
        )


def _progress_watch(url: str, options: MigrateOptions, say: Progress) -> ProgressWatch:
    """Reports of statements that run long, to the caller's hook or as progress lines."""

    def report(progress: StatementProgress) -> None:
        if options.on_progress is not None:
            options.on_progress(progress)
        else:
            say(progress.describe())

    return ProgressWatch(
        _session_url(url, options.policy), report, after=options.progress_after, every=options.progress_every
    )


@contextlib.contextmanager
def _maintenance_lock(url: str, options: MigrateOptions) -> Iterator[None]:
    """The migrator lock in the maintenance database, which no swap of the target database can release.

    Where that database cannot be reached only the lock in the target database serialises migrators; the
    restore strategy, which needs the maintenance database, has refused to start already in that case."""
    try:
        conn = connect(with_database(url, MAINTENANCE_DATABASE), autocommit=True, connect_timeout=5)
    except PgwardenError as exc:
        if options.rollback == RollbackStrategy.RESTORE:
            raise
        log.debug("no maintenance-database lock: %s", exc)
        yield
        return
    with (
        conn,
        migrator_lock(
            conn,
            options.history_schema,
            wait_seconds=options.lock_wait_seconds,
            database=database_name(url),
        ),
    ):
        yield


def _version_or_none(url: str, schema: str) -> str | None:
    """The version the database is at, when it can still be read (for reports of runs that never started);
    `url` carries the run's timeouts, so a locked history table cannot hold the report up."""
    try:
        with connect(url, autocommit=True, connect_timeout=5) as conn:
            return history.current_version(history.read_history(conn, schema))
    except (PgwardenError, psycopg.Error):
        return None


def postgres_timeout(setting: str, value: str) -> str:
    """A timeout as PostgreSQL is handed it: milliseconds, from the one duration grammar (pgwarden.api.durations);
    BadInput for text that is not a duration or exceeds what PostgreSQL takes."""
    try:
        ms = milliseconds(value)
    except ValueError as exc:
        raise BadInput(f"{setting} {exc}") from exc
    if ms > POSTGRES_MAX_MS:
        raise BadInput(
            f"{setting} {value!r} is longer than PostgreSQL allows (24 days); give a shorter bound"
        )
    return str(ms)


POSTGRES_MAX_MS = 2_147_483_647  # lock_timeout and statement_timeout are int4 milliseconds


def _timeouts(policy: MigrationPolicy) -> dict[str, str]:
    return {
        "lock_timeout": postgres_timeout("lock_timeout", policy.lock_timeout),
        "statement_timeout": postgres_timeout("statement_timeout", policy.statement_timeout),
    }


def _set_timeouts(conn: psycopg.Connection[Any], policy: MigrationPolicy) -> None:
    for setting, value in _timeouts(policy).items():
        if value == "0":
            raise BadInput(
                f"{setting} 0 would let the run wait for ever; give a bound such as 8h (the default is "
                f"{MigrationPolicy.model_fields[setting].default})"
            )
        try:
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
        except psycopg.errors.InvalidParameterValue as exc:
            raise BadInput(
                f"{setting} {value!r} is not a duration; use e.g. 5s, 10m, 1h30m or 500ms"
            ) from exc


def _session_url(url: str, policy: MigrationPolicy) -> str:
    """The URL every other session of the run opens (counts, reconnects), carrying the same timeouts."""
    return with_settings(url, _timeouts(policy))


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
        raise BadInput(str(exc)) from exc
    except PlanRefused as exc:
        raise BadInput(f"refused, nothing was changed:\n{exc}") from exc
    return plan


def _lint(conn: psycopg.Connection[Any], plan: MigrationPlan, options: MigrateOptions) -> LintResult:
    """squawk's findings on the files the run applies; BadInput, before anything changes, when the policy
    refuses one of them."""
    major, minor = divmod(conn.info.server_version, 10000)
    result = lint_migrations(
        [step.file for step in plan.steps], fail_on=options.lint_fail_on, pg_version=f"{major}.{minor}"
    )
    refused = result.refused(options.lint_fail_on)
    if refused:
        raise BadInput(refusal_message(refused))
    return result


def _plan_report(plan: MigrationPlan, url: str, linted: LintResult) -> MigrationReport:
    lint_lines = [f"lint: {f.file}:{f.line} {f.rule}: {f.message}" for f in linted.findings]
    return MigrationReport(
        outcome=Outcome.SUCCEEDED,
        database=describe(url),
        plan_only=True,
        current_version=plan.current_version,
        pending=list(plan.pending),
        baselined=[f.version for f in plan.baselined],
        plan=[*plan.describe(), *lint_lines],
        warnings=[*plan.warnings, *linted.warnings],
        lint=list(linted.findings),
    )
