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
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from pgwarden.api.policy import MigrationPolicy, RollbackStrategy
from pgwarden.api.reports import BackupInfo, ErrorInfo, LockRetry, MigrationReport, Outcome, Rehearsal
from pgwarden.api.verify import VerifySpec
from pgwarden.engine.migrate import history, verify
from pgwarden.engine.migrate.failures import as_run_failure
from pgwarden.engine.migrate.files import (
    InvalidVersion,
    MigrationFile,
    MigrationFilesRefused,
    load_migrations,
)
from pgwarden.engine.migrate.lint import LintResult, lint_migrations, refusal_message
from pgwarden.engine.migrate.plan import AppliedMigration as HistoryEntry
from pgwarden.engine.migrate.plan import MigrationPlan, PlanRefused, plan_migrations
from pgwarden.engine.migrate.progress import (
    REPORT_AFTER,
    REPORT_EVERY,
    OnProgress,
    ProgressWatch,
    StatementProgress,
)
from pgwarden.engine.migrate.run import Run
from pgwarden.engine.migrate.sqlscript import ScriptError
from pgwarden.engine.migrate.statements import StatementObserver
from pgwarden.engine.migrate.timeouts import session_url, set_timeouts
from pgwarden.engine.postgres.connect import connect, database_name, describe, with_database
from pgwarden.engine.recovery import journal, undo
from pgwarden.engine.recovery.journal import JournalRun
from pgwarden.engine.recovery.locks import migrator_lock, retry_on_lock_timeout
from pgwarden.engine.recovery.settle import Notes, describe_run, settle_runs, settle_server
from pgwarden.engine.recovery.undo import Restorer
from pgwarden.errors import BadInput, DatabaseUnavailable, PgwardenError

if TYPE_CHECKING:  # a rehearsal and a restore (backups, storage) are loaded by the runs that have them
    from pgwarden.engine.migrate.rehearsal import RehearsalOptions

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
MAINTENANCE_DATABASE = "postgres"


class SafetyNet(Restorer, Protocol):
    """The pre-migration backup (`--backup-to`) and the restore that undoes a run from it."""

    location: str
    """Where its backups go (the run's journal records it, with `owner`, for a rollback after its death)."""
    owner: str | None

    def preflight(self, strategy: RollbackStrategy) -> None:
        """Raise BadInput, before anything changes, when the strategy could not work here."""

    def take(self) -> BackupInfo:
        """Take the backup; raise PgwardenError when it fails (nothing is migrated then)."""


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
    settle: bool = True
    """Settle what a dead run left on the database before running (not on a rehearsal's throwaway copy)."""


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
            set_timeouts(conn, options.policy)
            plan = _plan(conn, files, options)
            report = _plan_report(plan, url, _lint(conn, plan, options))
    else:
        # A swap a dead run left half-done may have taken the database's name away: settled before anything
        # connects to it (the migrator lock's part, the journal, is settled under that lock in _run).
        notes = settle_server(url, say) if options.settle else Notes()
        _check_rollback(options)
        if options.rehearsal is not None:
            report = _rehearse_then_run(url, files, options, say, notes)
        else:
            report = _run(url, files, options, say, notes)
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
    url: str, files: list[MigrationFile], options: MigrateOptions, say: Progress, notes: Notes
) -> MigrationReport:
    """Plan and lint on the real database (read only), rehearse on a scratch copy, and run for real only
    when the rehearsal succeeded; otherwise the real database is never touched."""
    from pgwarden.engine.migrate.rehearsal import rehearse

    assert options.rehearsal is not None
    with connect(url, autocommit=True) as conn:
        set_timeouts(conn, options.policy)
        plan = _plan(conn, files, options)
        _lint(conn, plan, options)
    rehearsing = for_rehearsal(options)

    def run_plan(scratch_url: str, observers: tuple[StatementObserver, ...]) -> MigrationReport:
        watched = dataclasses.replace(rehearsing, observers=(*options.observers, *observers))
        return _run(scratch_url, files, watched, lambda message: say(f"rehearsal: {message}"))

    rehearsed = rehearse(url, options.rehearsal, run_plan, say)
    if rehearsed.outcome == Outcome.SUCCEEDED:
        say("rehearsal succeeded; migrating the database")
        report = _run(url, files, options, say, notes)
    else:
        report = _stopped_by(rehearsed, plan, url, options)
        report.recovered = notes.recovered()
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
        settle=False,
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
        rollback=undo.nothing_started(options.rollback),
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


@dataclass
class _Phase:
    """What a run that has not started yet is doing, and the lock timeouts it retried, for its report."""

    name: str = "connecting"
    retries: list[LockRetry] = field(default_factory=list)

    def note_retry(self, number: int, delay: float, _error: BaseException) -> None:
        self.retries.append(LockRetry(phase=self.name, attempt=number, delay_seconds=delay))


def _run(
    url: str, files: list[MigrationFile], options: MigrateOptions, say: Progress, notes: Notes | None = None
) -> MigrationReport:
    """Lock, settle what a dead run left in the journal, plan and run; a failure before the run starts
    changes nothing and is reported as such. `notes`: what settling the server found already."""
    phase, notes = _Phase(), notes or Notes()
    run: Run | None = None
    try:
        with _maintenance_lock(url, options):
            if options.settle:
                phase.name = "settling what a dead run left"
                notes.extend(_settle(url, options, say))
                if notes.failed:
                    raise PgwardenError(
                        "a dead run's work could not be settled, so this run did not start: "
                        + "; ".join(notes.done[-2:] or notes.found)
                    )
            with connect(url, autocommit=True) as conn:
                set_timeouts(conn, options.policy)
                phase.name = "waiting for the migrator lock"
                with migrator_lock(conn, options.history_schema, wait_seconds=options.lock_wait_seconds):
                    run = _prepared(conn, url, files, options, say, phase)
                    if (continued := run.journal.continuing) is not None:
                        notes.done.append(f"this run continues run {continued.id}")
                    run.report.recovered = notes.recovered()
                    try:
                        with _progress_watch(url, options, say) as watch:
                            run.options = dataclasses.replace(
                                run.options, observers=(*options.observers, watch)
                            )
                            return run.execute()
                    finally:
                        run.close()
    except BadInput:
        raise
    except (PgwardenError, psycopg.Error, KeyboardInterrupt) as exc:
        if run is not None:
            raise  # the run reports its own failures; what escapes it is a failure of the report itself
        failure = as_run_failure(
            exc, phase.name, lock_timeout=options.policy.lock_timeout, attempts=options.lock_attempts
        )
        say(f"failed: {failure}")
        return MigrationReport(
            # Nothing was changed: RolledBack says so, unless the database was never reached at all.
            outcome=Outcome.FAILED
            if isinstance(exc, DatabaseUnavailable) or notes.failed
            else Outcome.ROLLED_BACK,
            database=describe(url),
            rollback=undo.nothing_started(options.rollback),
            error=failure.to_error(),
            lock_retries=phase.retries,
            recovered=notes.recovered(),
            current_version=_version_or_none(session_url(url, options.policy), options.history_schema),
        )


def _settle(url: str, options: MigrateOptions, say: Progress) -> Notes:
    """The journal's dead runs that were rolling back have their rollback finished (a dead run that was going
    forward is continued by this run)."""
    notes = settle_runs(
        session_url(url, options.policy),
        options.history_schema,
        undo_forward=False,
        wait_seconds=options.lock_wait_seconds,
        say=say,
    )
    notes.partial = False  # what is left going forward, this run continues
    return notes


def _prepared(
    conn: psycopg.Connection[Any],
    url: str,
    files: list[MigrationFile],
    options: MigrateOptions,
    say: Progress,
    phase: _Phase,
) -> Run:
    """Under the migrator lock: the dead run to continue (if any), the plan, its lint, the Run."""
    phase.name = "reading the journal"
    continuing = _continuing(conn, options, say)
    phase.name = "reading the history"
    plan = retry_on_lock_timeout(
        lambda: _plan(conn, files, options), attempts=options.lock_attempts, on_retry=phase.note_retry
    )
    phase.name = "linting the pending migrations"
    linted = _lint(conn, plan, options)
    restorer = None
    if continuing is not None and continuing.backup is not None:
        from pgwarden.engine.restore.safety_net import BackupSafetyNet

        restorer = BackupSafetyNet(
            url, continuing.backup.storage, owner=continuing.backup.owner, progress=say
        )
    run = Run(
        conn, session_url(url, options.policy), plan, options, say, continuing=continuing, restorer=restorer
    )
    run.report.lock_retries.extend(phase.retries)
    run.report.lint = list(linted.findings)
    run.report.warnings.extend(linted.warnings)
    return run


def _continuing(conn: psycopg.Connection[Any], options: MigrateOptions, say: Progress) -> JournalRun | None:
    """The dead run this run continues: the one the journal says died going forward (nothing else is left
    unfinished once settled; one still rolling back stops the run)."""
    if not options.settle:
        return None
    unfinished = journal.unfinished(conn, options.history_schema)
    rolling_back = [r for r in unfinished if r.state == journal.ROLLING_BACK]
    if rolling_back:
        raise PgwardenError(
            f"{describe_run(rolling_back[0])}; its rollback is unfinished, so this run did not start: "
            "`pgwarden recover` finishes it"
        )
    if not unfinished:
        return None
    continuing = unfinished[-1]
    say(
        f"continuing run {continuing.id}, which died after applying {', '.join(continuing.versions) or 'nothing'}"
    )
    return continuing


def _progress_watch(url: str, options: MigrateOptions, say: Progress) -> ProgressWatch:
    """Reports of statements that run long, to the caller's hook or as progress lines."""

    def report(progress: StatementProgress) -> None:
        if options.on_progress is not None:
            options.on_progress(progress)
        else:
            say(progress.describe())

    return ProgressWatch(
        session_url(url, options.policy), report, after=options.progress_after, every=options.progress_every
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


def version_of(url: str, schema: str) -> str | None:
    """The version the database is at, or None when there is none or it cannot be read."""
    return _version_or_none(url, schema)


def _version_or_none(url: str, schema: str) -> str | None:
    """The version the database is at, when it can still be read (for reports of runs that never started);
    `url` carries the run's timeouts, so a locked history table cannot hold the report up."""
    try:
        with connect(url, autocommit=True, connect_timeout=5) as conn:
            return history.current_version(history.read_history(conn, schema))
    except (PgwardenError, psycopg.Error):
        return None


def _plan(
    conn: psycopg.Connection[Any], files: list[MigrationFile], options: MigrateOptions
) -> MigrationPlan:
    rows = history.read_history(conn, options.history_schema)
    entries = [
        HistoryEntry(
            r.version,
            r.description,
            r.checksum or "",
            r.success,
            r.statements_applied or 0,
            r.statement_running,
            r.statements_digest,
        )
        for r in rows
    ]
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
