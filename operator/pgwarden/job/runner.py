"""The in-pod runner of `pgwarden job KIND`: the task from the environment in, the engine run, the report out.

The compact report (at most 4 KiB) goes to the termination message, where the operator reads it; the full
report is the last line on stdout (`kubectl logs`) and, for backups, `report.json` beside the backup.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo
from pydantic import ValidationError

from pgwarden.api.backup import DatabaseBackupSpec, ObjectSelection, Retention
from pgwarden.api.common import StorageSpec
from pgwarden.api.durations import parse_duration
from pgwarden.api.job_report import BackupJobReport
from pgwarden.api.progress import MigrationProgress, progress_line
from pgwarden.api.reports import MigrationReport, Outcome
from pgwarden.api.retention import RetentionDecision, RetentionOutcome
from pgwarden.api.task import (
    DATABASE_SECRET_ENV,
    REHEARSAL_SERVER_KEYS,
    STORAGE_ROOT,
    TASK_ENV,
    BackupScope,
    JobKind,
    RehearsalTask,
    RestoreSource,
    Task,
    backup_scope,
)
from pgwarden.engine.backup.backup import take_backup
from pgwarden.engine.backup.options import BackupOptions
from pgwarden.engine.backup.selection import DumpSelection
from pgwarden.engine.migrate import history
from pgwarden.engine.migrate.migrate import MigrateOptions, for_rehearsal, migrate, version_of
from pgwarden.engine.migrate.progress import StatementProgress
from pgwarden.engine.migrate.rehearsal import RehearsalOptions, rehearse
from pgwarden.engine.migrate.statements import StatementObserver
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.engine.recovery.recover import recover, settle_first
from pgwarden.engine.recovery.settle import settle_scratch
from pgwarden.engine.restore.drill import run_drill
from pgwarden.engine.restore.partial import PartialOptions, restore_selected, selection_of
from pgwarden.engine.restore.restore import restore_backup
from pgwarden.engine.restore.safety_net import BackupSafetyNet
from pgwarden.engine.restore.verify import verify_backup
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.job.drift import run_drift
from pgwarden.job.pod_inputs import copy_storage, identities, recipients
from pgwarden.job.termination_message import compact, write_termination_message
from pgwarden.redact import redact, redact_obj, register_environment, register_secret, register_url
from pgwarden.storage import ObjectNotFound, Storage, StorageError, list_backups, locate_backup, open_storage
from pgwarden.storage.manifest import MANIFEST, PruneResult, prune
from pgwarden.storage.retention import Decision, RetentionPolicy, time_zone
from pgwarden.streams import print_json, progress

log = logging.getLogger("pgwarden.job.runner")
Report = dict[str, Any]
STORAGE_ROOT_ENV = "PGWARDEN_STORAGE_ROOT"  # tests put "volume" storage somewhere writable
REPORT_FILE = "report.json"


def load_task(kind: str) -> Task:
    """The task the operator put in PGWARDEN_TASK; BadInput says what is wrong with it."""
    text = os.environ.get(TASK_ENV)
    if not text:
        raise BadInput(f"{TASK_ENV} is not set; `pgwarden job` runs inside Jobs the operator creates")
    try:
        task = Task.model_validate_json(text)
    except ValidationError as exc:
        raise BadInput(f"{TASK_ENV} is not a valid task: {exc}") from exc
    if task.kind != kind:
        raise BadInput(f"this is a {task.kind} task, but `pgwarden job {kind}` was run")
    return task


def database_url() -> str:
    """DATABASE_URL (the Secret's `uri`) or '' for libpq's PG* variables (the Secret's libpq keys)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    if os.environ.get("PGHOST") or os.environ.get("PGDATABASE"):
        return ""
    secret = os.environ.get(DATABASE_SECRET_ENV, "the database Secret")
    raise BadInput(
        f"Secret {secret!r} is missing or has neither the key 'uri' nor the keys 'host' and 'dbname'; "
        "create it with uri=postgresql://user:password@host:5432/dbname, or with host, port, dbname, "
        "user and password"
    )


def storage_uri(storage: StorageSpec) -> str:
    """The location string the engine takes; S3 settings go to the environment the engine reads them from."""
    if storage.s3 is not None:
        s3 = storage.s3
        if s3.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = s3.endpoint
        if s3.region:
            os.environ["AWS_REGION"] = s3.region
        if s3.force_path_style:
            os.environ["PGWARDEN_S3_FORCE_PATH_STYLE"] = "true"
        return f"s3://{s3.bucket}/{s3.prefix.strip('/')}".rstrip("/")
    assert storage.volume is not None
    root = Path(os.environ.get(STORAGE_ROOT_ENV, STORAGE_ROOT))
    return str(root / storage.volume.path.strip("/"))


@contextmanager
def migrations_directory(task: Task) -> Iterator[Path]:
    """The mounted migrations, or the inline ones written to a scratch directory."""
    spec = task.migration
    assert spec is not None
    if spec.migrations.inline is None:
        if not task.migrations_dir:
            raise BadInput("the task names no migrations directory and has no inline migrations")
        yield Path(task.migrations_dir)
        return
    with tempfile.TemporaryDirectory(prefix="pgwarden-migrations-") as scratch:
        for item in spec.migrations.inline:
            (Path(scratch) / item.name).write_text(item.sql)
        yield Path(scratch)


def run_migration(task: Task, url: str) -> Report:
    spec = task.migration
    if spec is None:
        raise BadInput("the migrate task carries no migration spec")
    safety_net = None
    if spec.backup_before is not None:
        # Like a DatabaseBackup's: the migration's own folder and owner, so nothing else prunes or restores them.
        folder = f"{task.resource.namespace}/{task.resource.name}"
        safety_net = BackupSafetyNet(
            url,
            _under(storage_uri(spec.backup_before.storage), folder),
            owner=f"DatabaseMigration/{folder}",
            progress=progress,
        )
    with migrations_directory(task) as directory:
        options = MigrateOptions(
            directory=directory,
            target=spec.target_version,
            baseline=spec.baseline_version,
            policy=spec.policy,
            verify=spec.verify,
            rollback=spec.rollback.strategy,
            safety_net=safety_net,
            lint_fail_on=tuple(spec.policy.lint.fail_on),
        )
        if task.rehearsal is not None:
            return rehearse_only(url, options, task.rehearsal).to_json_dict()
        if task.plan_only:  # every finding, for the approver; the run itself refuses what the policy names
            planned = dataclasses.replace(options, plan_only=True, lint_fail_on=())
            return migrate(url, planned, progress=progress).to_json_dict()
        return migrate(
            url, dataclasses.replace(options, on_progress=report_progress), progress=progress
        ).to_json_dict()


def report_progress(running: StatementProgress) -> None:
    """A long statement's progress in the Job's log: the line a person reads, and the line the operator
    reads into status.progress (the Pod cannot write status itself)."""
    progress(running.describe())
    at = datetime.now(UTC)
    progress(
        progress_line(MigrationProgress.model_validate({**dataclasses.asdict(running), "observed_at": at}))
    )


def rehearse_only(url: str, options: MigrateOptions, task: RehearsalTask) -> MigrationReport:
    """The rehearsal Job: plan and lint on the database (read only; a lint refusal is exit 2), then the same
    run on a scratch copy restored from the backup; the outcome is the rehearsal's, the database untouched."""
    options = for_rehearsal(options)
    report = migrate(url, dataclasses.replace(options, plan_only=True), progress=progress)
    report.plan_only = False
    if not report.pending:
        progress("rehearsal: nothing is pending, so there is nothing to rehearse")
        return report

    def run_plan(scratch_url: str, observers: tuple[StatementObserver, ...]) -> MigrationReport:
        # Its long statements report progress as the run's do: the operator shows them in status.progress.
        watched = dataclasses.replace(
            options, observers=(*options.observers, *observers), on_progress=report_progress
        )
        return migrate(scratch_url, watched, progress=lambda message: progress(f"rehearsal: {message}"))

    location, owner = _rehearsal_location(task.source)
    settings = RehearsalOptions(
        location=location,
        owner=owner,
        server_url=_rehearsal_server() if task.server else None,
        max_lock_hold_seconds=task.max_lock_hold_seconds,
        identities=identities() if task.sealed else (),
    )
    rehearsed = rehearse(url, settings, run_plan, progress)
    report.rehearsal = rehearsed
    report.outcome = rehearsed.outcome
    report.error = rehearsed.error
    return report


def _rehearsal_location(source: RestoreSource) -> tuple[str, str | None]:
    """Where the rehearsal's backup is, and whose: a DatabaseBackup's folder and owner for its latest (the
    engine prefers its newest verified backup there), else one backup (by id, or the one the status names),
    or a location (a prefix: the engine chooses there too)."""
    root = storage_uri(source.storage)
    scope = source.scope
    if scope is not None:
        folder = open_storage(root).child(scope.path)
        try:
            owned = source.backup_id is None and bool(list_backups(folder, owner=scope.owner))
        except StorageError:
            owned = False  # _owned_backup reads it again and says what is wrong
        if owned:
            return folder.uri(), scope.owner
        return _owned_backup(root, source, scope).uri(), None
    given = source.location or ""
    return (given if given.startswith(("s3://", "/")) else _under(root, given)), None


def _rehearsal_server() -> str:
    """The scratch server's connection string from its Secret's keys (uri, or host/port/user/password)."""
    values = {key: os.environ.get(var, "").strip() for var, key in REHEARSAL_SERVER_KEYS}
    register_url(values["uri"])
    register_secret(values["password"])
    if values["uri"]:
        return values["uri"]
    if not values["host"]:
        raise BadInput(
            "the rehearsal server's Secret has neither the key 'uri' nor 'host'; create it with "
            "uri=postgresql://user:password@host:5432/postgres, or with host, port, user and password"
        )
    parts = {key: value for key, value in values.items() if key != "uri" and value}
    return conninfo.make_conninfo(dbname="postgres", **parts)


def _retention(retention: Retention | None, zone: str | None) -> RetentionPolicy | None:
    """The spec's retention as the planner's policy, its calendar rules on the resource's time zone."""
    if retention is None:
        return None
    return RetentionPolicy(
        keep_last=retention.keep_last,
        keep_daily=retention.keep_daily,
        keep_weekly=retention.keep_weekly,
        keep_monthly=retention.keep_monthly,
        keep_yearly=retention.keep_yearly,
        max_age=parse_duration(retention.max_age) if retention.max_age else None,
        time_zone=time_zone(zone),
    )


def _retention_outcome(result: PruneResult, zone: str | None) -> RetentionOutcome:
    """Each backup retention kept or deleted, with the rules why: what status.retention shows."""

    def decisions(items: list[Decision]) -> list[RetentionDecision]:
        return [RetentionDecision(id=d.id, rules=list(d.rules), reason=d.reason) for d in items]

    return RetentionOutcome(
        time_zone=zone or "UTC", kept=decisions(result.plan.keep), deleted=decisions(result.plan.delete)
    )


def _selection(include: ObjectSelection | None, exclude: ObjectSelection | None) -> DumpSelection:
    """The spec's include/exclude blocks as pg_dump's -n/-N/-t/-T patterns."""
    return DumpSelection(
        schemas=tuple(include.schemas) if include else (),
        tables=tuple(include.tables) if include else (),
        exclude_schemas=tuple(exclude.schemas) if exclude else (),
        exclude_tables=tuple(exclude.tables) if exclude else (),
    )


def _scope(task: Task) -> BackupScope:
    """Whose backups this Job makes and where; a task from an older operator carries none: derive it."""
    return task.backup_scope or backup_scope(task.resource.namespace, task.resource.name)


def _under(root: str, path: str) -> str:
    return f"{root.rstrip('/')}/{path.strip('/')}" if path.strip("/") else root


def _unscoped_backups(root: str) -> str | None:
    """A warning when backups lie directly under the storage's root, outside every DatabaseBackup's folder
    (written before per-resource folders, or by hand): retention never prunes them, so the user has to."""
    try:
        found = list_backups(open_storage(root))
    except StorageError:
        return None
    if not found:
        return None
    return (
        f"{len(found)} {'backups lie' if len(found) != 1 else 'backup lies'} directly under {root}, outside the "
        "DatabaseBackups' own folders (from before per-resource folders, or made by hand); retention leaves "
        "them. Once they are not needed, remove them with "
        f"`pgwarden prune {root} --owner OWNER --keep-last N` (`pgwarden backups {root}` shows the owners)"
    )


def run_backup(task: Task, url: str) -> Report:
    """Back up into the resource's own folder (`<prefix>/<namespace>/<name>/`), recording it as the owner,
    then apply retention to its backups only."""
    spec = task.backup
    if spec is None:
        raise BadInput("the backup task carries no backup spec")
    scope = _scope(task)
    root = storage_uri(spec.storage)
    location = _under(root, scope.path)
    copies = [copy_storage(index, spec).child(scope.path) for index in range(len(spec.copies))]
    options = BackupOptions(
        format=str(spec.format),
        compression=spec.compression,
        jobs=spec.parallel_jobs,
        verify=verify_backup if spec.verify.restore else None,
        selection=_selection(spec.include, spec.exclude),
        owner=scope.owner,
        lock_wait_timeout=spec.lock_wait_timeout,
        encrypt_to=recipients(spec),
        identities=identities() if spec.encryption and spec.verify.restore else (),
        copy_to=copies,
    )
    recovered = settle_first(url, progress)
    report = BackupJobReport(**dict(take_backup(url, location, options, progress)))
    report.recovered = recovered
    if report.outcome != Outcome.SUCCEEDED or report.backup is None:
        return report.to_json_dict()
    storage = open_storage(location)
    try:
        stored = json.dumps(redact_obj(report.to_json_dict())).encode()
        storage.child(report.backup.id).put_bytes(REPORT_FILE, stored)
    except StorageError as exc:
        report.warnings.append(f"{REPORT_FILE} was not written: {exc}")
    _copies_retention(spec, copies, scope, report)
    policy = _retention(spec.retention, spec.time_zone)
    if policy is not None:
        result = _pruned(storage, policy, scope, report, "retention did not run")
        if result is not None:
            report.retained, report.pruned = len(result.plan.keep), result.deleted
            report.retention = _retention_outcome(result, spec.time_zone)
        if leftover := _unscoped_backups(root):
            report.warnings.append(leftover)
    return report.to_json_dict()


def _copies_retention(
    spec: DatabaseBackupSpec, copies: list[Storage], scope: BackupScope, report: BackupJobReport
) -> None:
    """Each copy's own retention, over the owner's copies there; `retained` beside each copy in the report."""
    for target, where, copied in zip(spec.copies, copies, report.copies or [], strict=False):
        policy = _retention(target.retention, spec.time_zone)
        if policy is None or not copied.verified:
            continue
        result = _pruned(
            where, policy, scope, report, f"retention of the copies at {where.uri()} did not run"
        )
        if result is not None:
            copied.retained = len(result.plan.keep)
            copied.retention = _retention_outcome(result, spec.time_zone)


def _pruned(
    where: Storage, policy: RetentionPolicy, scope: BackupScope, report: BackupJobReport, failed: str
) -> PruneResult | None:
    """Retention over the owner's backups at `where`; a storage failure is a warning (`failed: why`)."""
    try:
        return prune(where, policy, datetime.now(UTC), owner=scope.owner)
    except StorageError as exc:
        report.warnings.append(f"{failed}: {exc}")
        return None


def _owned_backup(root: str, source: RestoreSource, scope: BackupScope) -> Storage:
    """The backup of a backupRef: by id (in the DatabaseBackup's folder, else at the storage's root where
    backups from before per-resource folders lie), or its owner's newest; with none there yet, the one
    the DatabaseBackup's status names. A backup recorded as another owner's is refused."""
    storage = open_storage(root)
    folder = storage.child(scope.path)
    try:
        if source.backup_id is not None:
            where = folder if folder.exists(f"{source.backup_id}/{MANIFEST}") else storage
            backup, _manifest = locate_backup(where, source.backup_id, owner=scope.owner)
        elif list_backups(folder, owner=scope.owner) or not source.last_known_id:
            backup, _manifest = locate_backup(folder, owner=scope.owner)
        else:
            backup, _manifest = locate_backup(storage, source.last_known_id, owner=scope.owner)
    except ObjectNotFound as exc:
        raise BadInput(f"{exc}; nothing was restored") from exc
    except StorageError as exc:
        raise PgwardenError(f"{exc}; nothing was restored") from exc
    return backup


def run_restore(task: Task, url: str) -> Report:
    spec, source = task.restore, task.restore_source
    if spec is None or source is None:
        raise BadInput("the restore task carries no restore spec or source")
    root = storage_uri(source.storage)
    target: str | Storage = root
    backup_id = source.backup_id
    if source.scope is not None:
        target, backup_id = _owned_backup(root, source, source.scope), None
    elif source.location:
        given = source.location
        target = given if given.startswith(("s3://", "/")) else _under(root, given)
    recovered = settle_first(url, progress)
    if spec.only is not None:
        options = PartialOptions(
            selection_of(spec.only.schemas, spec.only.tables, spec.rename_suffix),
            suffix=spec.rename_suffix,
            clean=spec.clean,
            terminate=spec.terminate_connections,
            jobs=spec.parallel_jobs,
            identities=identities() if spec.encryption is not None else (),
        )
        partial = restore_selected(url, target, options, backup_id=backup_id, progress=progress)
        partial.recovered = recovered
        return partial.to_json_dict()
    report = restore_backup(
        url,
        target,
        backup_id=backup_id,
        create=spec.create_database,
        clean=spec.clean,
        terminate=spec.terminate_connections,
        jobs=spec.parallel_jobs,
        identities=identities() if spec.encryption is not None else (),
        progress=progress,
        row_counts=spec.verify.row_counts,
    )
    report.recovered = recovered
    return report.to_json_dict()


def run_drill_task(task: Task, url: str) -> Report:
    """A DatabaseBackup's restore drill: its newest backup (in its storage, or the copy verify.copy names)
    restored into a scratch database on the server `url` names, compared with its manifest, then dropped."""
    spec = task.backup
    if spec is None:
        raise BadInput("the drill task carries no backup spec")
    scope = _scope(task)
    storage = spec.storage
    if spec.verify.copy_index is not None:
        storage = spec.copies[spec.verify.copy_index].storage
    sealed = spec.encryption is not None and spec.encryption.identity_secret_ref is not None
    scratch = settle_scratch(url, progress)
    report = run_drill(
        _under(storage_uri(storage), scope.path),
        url,
        owner=scope.owner,
        identities=identities() if sealed else (),
        jobs=spec.parallel_jobs,
        progress=progress,
    )
    report.recovered = scratch.recovered()
    return report.to_json_dict()


def run_recovery(task: Task, url: str) -> Report:
    """After a migration or restore Job died without a report: settle what it left, with the storage of the
    backup its rollback restores (its spec's) reachable as it was for the Job."""
    if task.migration is not None and task.migration.backup_before is not None:
        storage_uri(task.migration.backup_before.storage)  # its S3 settings, into the environment
    elif task.restore_source is not None:
        storage_uri(task.restore_source.storage)
    progress(f"settling what Job {task.recovers or '?'} left")
    report = recover(url, progress=progress)
    report.current_version = version_of(url, history.DEFAULT_SCHEMA)
    return report.to_json_dict()


RUNNERS: dict[JobKind, Callable[[Task, str], Report]] = {
    JobKind.MIGRATE: run_migration,
    JobKind.BACKUP: run_backup,
    JobKind.RESTORE: run_restore,
    JobKind.DRILL: run_drill_task,
    JobKind.DRIFT: run_drift,  # many targets, each with credentials of its own: no DATABASE_URL
    JobKind.RECOVER: run_recovery,
}


def run(kind: str) -> int:
    """Run one task; exit 0 on success, 1 when the operation failed, 2 when the input was refused."""
    register_environment()
    code = 1
    try:
        task = load_task(kind)
        log.info(
            "%s for %s %s/%s (generation %s)",
            kind,
            task.resource.kind,
            task.resource.namespace,
            task.resource.name,
            task.resource.generation,
        )
        report = RUNNERS[task.kind](task, "" if task.kind == JobKind.DRIFT else database_url())
        code = 0 if report.get("outcome") == Outcome.SUCCEEDED else 1
    except PgwardenError as exc:
        report = {"outcome": "Failed", "error": {"message": exc.message}}
        code = exc.exit_code
    except KeyboardInterrupt as exc:  # SIGTERM: the Pod is being stopped; the operator still gets a report
        report = {"outcome": "Failed", "error": {"message": str(exc) or "interrupted"}}
    except psycopg.Error as exc:
        report = {"outcome": "Failed", "error": {"message": f"the database refused: {describe_error(exc)}"}}
    except Exception as exc:  # the operator must still get a report, and no secret in it
        log.debug("unexpected failure", exc_info=True)
        report = {
            "outcome": "Failed",
            "error": {"message": f"unexpected error: {type(exc).__name__}: {redact(str(exc))}"},
        }
    write_termination_message(compact(report))
    print_json(report)
    return code
