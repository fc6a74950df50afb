"""The one typed contract between the Job and the operator: every field of every report a Job writes is
either found in the resource's status, under the name the table below gives, or listed as not for status.

Each report is built as the engine side builds it (the `pgwarden.api` models, every field set), compacted into
the termination message as `pgwarden job` writes it, read back by `observe` from the Job the operator itself
created (its labels say which report it writes) and turned into status by the kind's `decide`. A field added
to a report and forgotten on the way, or a name misspelt on either side, fails here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from operator_runs import NOW, finished_pod, written
from pydantic import BaseModel

from pgwarden.api.copies import BackupCopy
from pgwarden.api.drill import DrillReport
from pgwarden.api.encryption import Sealing
from pgwarden.api.job_report import BackupJobReport
from pgwarden.api.lint import LintFinding
from pgwarden.api.reports import (
    AppliedMigration,
    BackupInfo,
    BeforeAfter,
    CheckResult,
    Difference,
    Drift,
    ErrorInfo,
    LockRetry,
    LockTaken,
    MigrationReport,
    Outcome,
    Recovered,
    RecoveryState,
    Rehearsal,
    RestoreComparison,
    RestoredTable,
    RestoreOnly,
    RestoreReport,
    RollbackOutcome,
    RollbackResult,
    RowChange,
    RowDifference,
    Verification,
    WaitedFor,
)
from pgwarden.api.retention import RetentionDecision, RetentionOutcome
from pgwarden.job.termination_message import compact
from pgwarden.operator import backups, drills, migrations, restores
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import ObservedRun, observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
STARTED = datetime(2025, 3, 1, 11, 59, 5, tzinfo=UTC)
ENDED = datetime(2025, 3, 1, 11, 59, 25, tzinfo=UTC)
BACKUP = BackupInfo(id="20250301T115905Z-a1b2c3", location="s3://b/shop/20250301T115905Z-a1b2c3", size_bytes=2048,
                    sha256="e" * 64, verified=True)  # fmt: skip
APPLIED = [AppliedMigration(version="0002", description="orders", checksum="b" * 64, duration_ms=7)]
CHANGES = [RowChange(table="public.orders", before=1, after=3)]
COMPARED = RestoreComparison(
    matches_backup=False,
    schema_matches=True,
    tables_compared=2,
    row_counts="exact",
    differences=[
        RowDifference(table="public.orders", expected=3, actual=2, detail="3 rows in the backup, 2")
    ],
    differences_total=1,
)

SETTLED_FIRST = Recovered(
    found=["scratch database shop_pgw_restore_1 of a dead run"],
    done=["dropped it"],
    state=RecoveryState.RECOVERED,
)


def job_of(manifest: Obj) -> Obj:
    """The Job the operator asked for, as the API server shows it once it completed."""
    found = copy.deepcopy(manifest)
    found["metadata"]["creationTimestamp"] = "2025-03-01T11:59:00Z"
    found["status"] = {
        "startTime": "2025-03-01T11:59:01Z",
        "completionTime": "2025-03-01T11:59:30Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    return found


def ran(manifest: Obj, report: BaseModel) -> ObservedRun:
    """The run of `manifest` whose pod ended with `report` in its termination message, as `pgwarden job`
    writes it (compacted, redacted)."""
    message = compact(report.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert len(message.encode()) < 4096 and '"truncated"' not in message, "the example must fit uncut"
    run = observe(job_of(manifest), [finished_pod(None, text=message)])
    assert run.report is not None and type(run.report) is type(report), "decoded as the Job's own report"
    assert run.report_notes is not None and not run.report_notes.problems()
    return run


def at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def as_json(value: Any) -> Any:
    """A report's value as status writes it (times in UTC to the second, `Z`)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, str) and value.startswith("20"):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def holds(found: Any, expected: Any) -> bool:
    """`found` is `expected`, or (for an object) has every one of its fields with the same value."""
    if isinstance(expected, dict) and isinstance(found, dict):
        return all(key in found and holds(found[key], value) for key, value in expected.items())
    return bool(found == expected)


def check(report: BaseModel, status: Obj, found_at: dict[str, str], not_for_status: dict[str, str]) -> None:
    """Every field of `report` is in `found_at` (its path in `status`) or in `not_for_status` (why not)."""
    fields = set(type(report).model_fields)
    assert fields == set(found_at) | set(not_for_status), (
        f"fields to place in status, or to list as not for status: {sorted(fields ^ (set(found_at) | set(not_for_status)))}"
    )
    assert not set(found_at) & set(not_for_status)
    assert report.model_fields_set == fields, "the example sets every field of the report"
    for name, path in found_at.items():
        assert holds(at(status, path), as_json(getattr(report, name))), f"{name} → status.{path}"


def full_migration_report() -> MigrationReport:
    return MigrationReport(
        recovered=SETTLED_FIRST,
        outcome=Outcome.SUCCEEDED,
        database="shop@db:5432/shop",
        plan_only=False,
        current_version="0002",
        tables=BeforeAfter(before=1, after=2),
        rows=BeforeAfter(before=1, after=3),
        row_counts="exact",
        row_changes=CHANGES,
        applied=APPLIED,
        pending=["0003"],
        baselined=["0001"],
        plan=["0002 orders (in one transaction)"],
        warnings=["0003 is not applied: beyond targetVersion"],
        verification=Verification(passed=True, checks=[CheckResult(name="orders", passed=True, actual="3")]),
        rollback=RollbackResult(
            strategy="transaction", outcome=RollbackOutcome.NOT_NEEDED, version_after="0002"
        ),
        backup=BACKUP,
        drift=Drift(
            detected=True, differences=[Difference(kind="column", object="public.t.x", detail="new")]
        ),
        lint=[LintFinding(rule="adding-field-with-default", file="0002_orders.sql", line=1, message="m")],
        rehearsal=None,
        lock_retries=[LockRetry(phase="applying 0002", attempt=1, delay_seconds=0.5)],
        waited_for=WaitedFor(runs=["backup 20250301T110000Z-ab12"], seconds=12.5),
        error=ErrorInfo(message="a warning-free run keeps no error", migration="0002"),
        started_at=STARTED.isoformat(),
        completed_at=ENDED.isoformat(),
        duration_seconds=20.0,
    )


def test_every_migration_report_field_reaches_status_or_is_listed(resource: Callable[..., Obj]) -> None:
    report = full_migration_report()
    report.rehearsal = Rehearsal(outcome=Outcome.SUCCEEDED)  # a rehearsal Job's; the next test follows it
    body = resource("migration-shop.yaml", "DatabaseMigration")
    created = migrations.decide(read(body), None, [], SETTINGS, NOW)  # type: ignore[arg-type]
    assert created.create is not None
    body["status"] = created.status.to_status()
    run = ran(created.create, report)
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status  # type: ignore[arg-type]

    assert status["phase"] == "Succeeded"
    check(
        report,
        status,
        found_at={
            "outcome": "phase",
            "current_version": "currentVersion",
            "tables": "tables",
            "rows": "rows",
            "row_changes": "rowChanges",
            "applied": "applied",
            "pending": "pending",
            "warnings": "warnings",
            "verification": "verification",
            "rollback": "rollback",
            "backup": "backup",
            "drift": "drift",
            "lint": "lint",
            "started_at": "startedAt",
            "completed_at": "completedAt",
            "duration_seconds": "durationSeconds",
        },
        not_for_status={
            "database": "named by the resource's own spec.database",
            "recovered": "what the Job settled of a dead run before it ran: its log and report say it; status.recovered is the recovery Job's, made when a Job died without a report",
            "plan_only": "a Job never plans only",
            "row_counts": "the resource's spec.verify.rowCounts says it",
            "baselined": "a Job's spec.baselineVersion says it",
            "plan": "the command line's --plan output",
            "rehearsal": "a rehearsal Job's report: status.rehearsal (next test)",
            "lock_retries": "in the Job's log; conditions carry the outcome",
            "waited_for": "in the Job's log while it waits (the WaitingForBackup reason is not built yet)",
            "error": "status.message, when the run failed (test_a_failed_runs_error_is_its_message)",
        },
    )


def test_every_rehearsal_field_reaches_status_rehearsal_or_is_listed(resource: Callable[..., Obj]) -> None:
    rehearsal = Rehearsal(
        outcome=Outcome.SUCCEEDED,
        backup="s3://b/shop/20250301T110000Z",
        server="postgres@scratch:5432/postgres",
        duration_seconds=2.5,
        restore_seconds=1.5,
        run_seconds=1.0,
        applied=APPLIED,
        row_changes=CHANGES,
        verification=Verification(passed=True),
        locks=[
            LockTaken(
                relation="public.orders",
                mode="ShareLock",
                held_seconds=0.2,
                blocks_writes=True,
                migration="0002",
                statement="0002_orders.sql:1",
                waited_seconds=0.1,
            )
        ],
        max_lock_hold_seconds=2.0,
        warnings=["no restore drill had verified a backup: the newest complete one was rehearsed on"],
        error=ErrorInfo(message="none"),
    )
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["rehearsal"] = {"backupRef": {"name": "shop-backup"}, "maxLockHold": "2s"}
    referenced = read(
        dict(resource("backup-once.yaml", "DatabaseBackup"), status={"lastBackup": BACKUP.to_json_dict()})
    )
    first = migrations.decide(read(body), None, [], SETTINGS, NOW, referenced=referenced)  # type: ignore[arg-type]
    assert first.create is not None
    body["status"] = first.status.to_status()
    run = ran(first.create, MigrationReport(outcome=Outcome.SUCCEEDED, rehearsal=rehearsal))
    decided = migrations.decide(
        read(body),
        None,
        [],
        SETTINGS,
        NOW,
        rehearsal_run=run,
        referenced=referenced,  # type: ignore[arg-type]
    )
    status = written(decided).status["rehearsal"]

    check(
        rehearsal,
        status,
        found_at={
            "outcome": "outcome",
            "backup": "backup",
            "duration_seconds": "durationSeconds",
            "restore_seconds": "restoreSeconds",
            "run_seconds": "runSeconds",
            "applied": "applied",
            "row_changes": "rowChanges",
            "locks": "locks",
            "max_lock_hold_seconds": "maxLockHoldSeconds",
            "warnings": "warnings",
        },
        not_for_status={
            "server": "the resource's spec.rehearsal.server names it",
            "verification": "the real run's verification is what status shows",
            "error": "status.rehearsal.message, when it failed",
        },
    )


def test_every_backup_report_field_reaches_status_or_is_listed(resource: Callable[..., Obj]) -> None:
    report = BackupJobReport(
        recovered=SETTLED_FIRST,
        outcome=Outcome.SUCCEEDED,
        database="shop@db:5432/shop",
        backup=BACKUP,
        format="custom",
        compression="zstd:3",
        tables=2,
        rows=3,
        server_version="18.1",
        pg_dump_version="18.1",
        verification=COMPARED.model_copy(
            update={"matches_backup": True, "differences": [], "differences_total": 0}
        ),
        error=ErrorInfo(message="none"),
        started_at=STARTED,
        completed_at=ENDED,
        duration_seconds=20.0,
        throughput_bytes_per_second=1024.0,
        encryption=Sealing(recipients=["age1" + "q" * 58]),
        copies=[BackupCopy(location="s3://c/shop/x", sha256="e" * 64, verified=True, retained=2)],
        warnings=["report.json was not written: storage is read-only"],
        retained=4,
        pruned=["20250201T000000Z-000000"],
        retention=RetentionOutcome(
            time_zone="Europe/Berlin",
            kept=[RetentionDecision(id=BACKUP.id, rules=["keepLast"], reason="one of the 4 newest")],
            deleted=[RetentionDecision(id="20250201T000000Z-000000", reason="no rule keeps it")],
        ),
    )
    body = resource("backup-once.yaml", "DatabaseBackup")
    created = backups.decide(read(body), [], None, SETTINGS, NOW)  # type: ignore[arg-type]
    assert created.create is not None
    body["status"] = created.status.to_status()
    run = ran(created.create, report)
    status = written(backups.decide(read(body), [run], None, SETTINGS, NOW)).status  # type: ignore[arg-type]

    assert status["lastBackup"]["copies"] == [
        {"location": "s3://c/shop/x", "sha256": "e" * 64, "verified": True, "retained": 2}
    ]
    check(
        report,
        status,
        found_at={
            "outcome": "history.0.outcome",
            "backup": "lastBackup",
            "tables": "lastBackup.tables",
            "rows": "lastBackup.rows",
            "started_at": "lastBackup.startedAt",
            "completed_at": "lastBackup.completedAt",
            "duration_seconds": "lastBackup.durationSeconds",
            "encryption": "lastBackup.encryption",
            "retained": "retained",
            "retention": "retention",
        },
        not_for_status={
            "database": "named by the resource's own spec.database",
            "recovered": "what the Job settled of a dead run before it ran: its log and report say it; status.recovered is the recovery Job's, made when a Job died without a report",
            "format": "the resource's spec.format",
            "compression": "the resource's spec.compression",
            "server_version": "in the backup's manifest",
            "pg_dump_version": "in the backup's manifest",
            "verification": "lastBackup.verified says whether the test restore matched",
            "error": "history[].message, when the run failed",
            "throughput_bytes_per_second": "a bench figure, in the Job's log",
            "copies": "lastBackup.copies, checked above (status keeps their outcome, not their timings)",
            "warnings": "in the Job's log",
            "pruned": "status.retained counts what is kept",
        },
    )


def test_every_restore_report_field_reaches_status_or_is_listed(resource: Callable[..., Obj]) -> None:
    report = RestoreReport(
        recovered=SETTLED_FIRST,
        outcome=Outcome.SUCCEEDED,
        database="shop@db:5432/shop",
        restored_from=BACKUP.location,
        backup=BACKUP,
        created_database=True,
        terminated_connections=0,
        tables=2,
        rows=3,
        verification=COMPARED,
        only=RestoreOnly(tables=["public.orders"]),
        rename_suffix="_restored",
        restored_tables=[
            RestoredTable(
                table="public.orders_restored",
                backup_table="public.orders",
                expected=3,
                actual=3,
                matches=True,
            )
        ],
        left_out=["constraint orders_customer_fk: a foreign key to public.customers, not restored"],
        error=ErrorInfo(message="none"),
        pg_restore_version="18.1",
        started_at=STARTED,
        completed_at=ENDED,
        duration_seconds=20.0,
    )
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["source"] = {"location": "shop/x", "storage": {"s3": {"bucket": "backups"}}}
    created = restores.decide(read(body), None, None, SETTINGS, NOW)  # type: ignore[arg-type]
    assert created.create is not None
    body["status"] = created.status.to_status()
    run = ran(created.create, report)
    status = written(restores.decide(read(body), run, None, SETTINGS, NOW)).status  # type: ignore[arg-type]

    assert status["verification"]["differences"] == [
        {"kind": "table", "object": "public.orders", "detail": "3 rows in the backup, 2"}
    ]
    assert status["verification"]["matchesBackup"] is False
    check(
        report,
        status,
        found_at={
            "outcome": "phase",
            "backup": "restoredFrom",
            "tables": "tables.after",
            "rows": "rows.after",
            "started_at": "startedAt",
            "completed_at": "completedAt",
            "duration_seconds": "durationSeconds",
            "restored_tables": "restoredTables",
            "left_out": "leftOut",
        },
        not_for_status={
            "verification": "status.verification: matchesBackup and the differences (checked above)",
            "only": "the resource's spec.only",
            "rename_suffix": "the resource's spec.renameSuffix",
            "database": "named by the resource's own spec.database",
            "recovered": "what the Job settled of a dead run before it ran: its log and report say it; status.recovered is the recovery Job's, made when a Job died without a report",
            "restored_from": "restoredFrom holds the whole backup",
            "created_database": "the resource's spec.createDatabase",
            "terminated_connections": "in the Job's log",
            "error": "status.message, when the restore failed",
            "pg_restore_version": "in the Job's log",
        },
    )


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.ROLLED_BACK])
def test_a_failed_runs_error_is_its_message(resource: Callable[..., Obj], outcome: Outcome) -> None:
    report = MigrationReport(outcome=outcome, error=ErrorInfo(message="permission denied", migration="0002"))
    body = resource("migration-shop.yaml", "DatabaseMigration")
    created = migrations.decide(read(body), None, [], SETTINGS, NOW)  # type: ignore[arg-type]
    body["status"] = created.status.to_status()
    run = ran(created.create or {}, report)
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status  # type: ignore[arg-type]
    assert status["phase"] == outcome
    assert "migration 0002: permission denied" in status["message"]


def test_every_drill_report_field_reaches_status_or_is_listed(resource: Callable[..., Obj]) -> None:
    report = DrillReport(
        recovered=SETTLED_FIRST,
        outcome=Outcome.SUCCEEDED,
        backup=BACKUP,
        server="postgres@db:5432/postgres",
        scratch_database="shop_pgw_drill_abc123",
        scratch_dropped=True,
        tables=2,
        rows=3,
        verification=COMPARED,
        marked_verified=True,
        restore_seconds=4.5,
        error=ErrorInfo(message="none"),
        started_at=STARTED,
        completed_at=ENDED,
        duration_seconds=20.0,
    )
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["verify"] = {"schedule": "0 3 * * 0"}
    template = drills.drill_cronjob(read(body), SETTINGS)["spec"]["jobTemplate"]  # type: ignore[arg-type]
    manifest = {
        "metadata": {"name": "shop-nightly-drill-1", **template["metadata"]},
        "spec": template["spec"],
    }
    run = ran(manifest, report)
    status = written(
        backups.decide(read(body), [], None, SETTINGS, NOW, drill_runs=[run])  # type: ignore[arg-type]
    ).status["lastVerifiedBackup"]

    assert status["differences"] == [
        {"kind": "table", "object": "public.orders", "detail": "3 rows in the backup, 2"}
    ]
    check(
        report,
        status,
        found_at={
            "outcome": "outcome",
            "tables": "tables",
            "rows": "rows",
            "restore_seconds": "restoreSeconds",
            "duration_seconds": "durationSeconds",
        },
        not_for_status={
            "backup": "its id and location: lastVerifiedBackup.id and .location (checked below)",
            "server": "the resource's spec.verify.server names it",
            "scratch_database": "dropped by the drill; in the Job's log",
            "scratch_dropped": "in the Job's log",
            "recovered": "what the drill settled of a dead run before it ran: in the Job's log and report",
            "verification": "lastVerifiedBackup.differences (checked above)",
            "marked_verified": "the backup's manifest records it",
            "error": "lastVerifiedBackup.message, when the drill failed",
            "started_at": "the Job's start",
            "completed_at": "lastVerifiedBackup.time: when the Job finished",
        },
    )
    assert (status["id"], status["location"]) == (BACKUP.id, BACKUP.location)
