"""status.progress of a running (or rehearsing) migration: the Job's progress line, read back by the operator
and decided on without I/O; a line seen twice patches once, a stale one or a finished run leaves no progress
behind; the rehearsal Job's log is read the same way while the migration rehearses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from operator_runs import MIGRATION_SUCCEEDED, NOW, finished_pod, job, pod, written

from pgwarden.api.migration import DatabaseMigrationStatus, MigrationPhase
from pgwarden.api.progress import PREFIX, MigrationProgress, last_progress, parse_line, progress_line
from pgwarden.engine.migrate.progress import StatementProgress
from pgwarden.job import runner as job_runner
from pgwarden.operator import handlers, migrations
from pgwarden.operator.deadlines import Deadlines
from pgwarden.operator.jobs import JobSettings
from pgwarden.operator.observe import observe
from pgwarden.operator.progress import (
    LOOK_EVERY,
    STALE_AFTER,
    progress_key,
    progress_patch,
    running_pod,
    watched_job,
)
from pgwarden.operator.resources import lenient, read
from pgwarden.operator.status import Decision, status_patch

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")
INDEX_BUILD = MigrationProgress(
    version="0003",
    script="0003_orders_by_customer.sql",
    line=2,
    statement="CREATE INDEX CONCURRENTLY orders_by_customer ON orders (customer_id)",
    elapsed_seconds=12.34,
    phase="waiting for old snapshots",
    table="orders",
    blocks_done=0,
    blocks_total=0,
    tuples_done=10,
    tuples_total=1000,
    observed_at=NOW - timedelta(seconds=3),
)


def log_of(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_a_progress_line_reads_back_as_the_progress_it_was_written_from() -> None:
    line = progress_line(INDEX_BUILD)
    assert line.startswith(PREFIX)
    fields = json.loads(line[len(PREFIX) :])
    assert fields["elapsedSeconds"] == 12.3
    assert fields["blocksTotal"] == 0 and fields["tuplesDone"] == 10 and fields["observedAt"].endswith("Z")
    assert parse_line(line) == INDEX_BUILD.model_copy(update={"elapsed_seconds": 12.3})


def test_a_long_statement_is_cut_in_the_line() -> None:
    long = INDEX_BUILD.model_copy(update={"statement": "UPDATE t SET x = 1 " * 50})
    read_back = parse_line(progress_line(long))
    assert read_back is not None and len(read_back.statement) == 200 and read_back.statement.endswith("...")


@pytest.mark.parametrize(
    "line",
    [
        "0003 0003_orders_by_customer.sql:2 running for 12s",
        PREFIX + "{not json",
        PREFIX + '{"version": "1"}',
        "",
    ],
)
def test_other_and_damaged_lines_carry_no_progress(line: str) -> None:
    assert parse_line(line) is None


def test_the_newest_progress_line_of_a_log_tail_counts() -> None:
    older = INDEX_BUILD.model_copy(update={"elapsed_seconds": 7.0, "phase": "building index: scanning table"})
    tail = log_of(
        progress_line(older), "0003 ... running for 12s", progress_line(INDEX_BUILD), "a line after it"
    )
    assert last_progress(tail) == INDEX_BUILD.model_copy(update={"elapsed_seconds": 12.3})
    assert last_progress("starting\nplanned 3 migration(s)\n") is None


def test_the_job_prints_the_line_a_person_reads_and_the_line_the_operator_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = StatementProgress(
        version="0003",
        script="0003_orders_by_customer.sql",
        line=2,
        statement="CREATE INDEX CONCURRENTLY orders_by_customer ON orders (customer_id)",
        elapsed_seconds=6.2,
        phase="waiting for old snapshots",
        table="orders",
    )
    job_runner.report_progress(running)
    human, machine = capsys.readouterr().err.splitlines()
    assert human == running.describe()
    parsed = parse_line(machine)
    assert parsed is not None
    assert (
        parsed.version,
        parsed.script,
        parsed.line,
        parsed.phase,
        parsed.table,
        parsed.elapsed_seconds,
    ) == (
        "0003",
        "0003_orders_by_customer.sql",
        2,
        "waiting for old snapshots",
        "orders",
        6.2,
    )
    assert abs((datetime.now(UTC) - parsed.observed_at).total_seconds()) < 5


def status_with(progress: Obj | None) -> DatabaseMigrationStatus:
    body: Obj = {"phase": "Running", "job": "shop-migrate-1"}
    if progress is not None:
        body["progress"] = progress
    return lenient(DatabaseMigrationStatus, body)


def test_a_progress_line_seen_twice_patches_once() -> None:
    tail = log_of("planned", progress_line(INDEX_BUILD))
    first = progress_patch(status_with(None), tail, NOW)
    assert first is not None and first["progress"]["phase"] == "waiting for old snapshots"
    assert first["progress"]["version"] == "0003" and first["progress"]["blocksDone"] == 0
    # The next look, on the status the first patch produced, reads the same tail: nothing to write.
    assert progress_patch(status_with(first["progress"]), tail, NOW + timedelta(seconds=15)) is None
    newer = INDEX_BUILD.model_copy(
        update={"elapsed_seconds": 17.0, "observed_at": NOW + timedelta(seconds=2)}
    )
    second = progress_patch(
        status_with(first["progress"]), log_of(progress_line(newer)), NOW + timedelta(seconds=5)
    )
    assert second is not None and second["progress"]["elapsedSeconds"] == 17.0


def test_a_stale_line_or_none_at_all_clears_progress_once() -> None:
    shown = progress_patch(status_with(None), progress_line(INDEX_BUILD), NOW)
    assert shown is not None
    later = INDEX_BUILD.observed_at + STALE_AFTER + timedelta(seconds=1)
    assert progress_patch(status_with(shown["progress"]), progress_line(INDEX_BUILD), later) == {
        "progress": None
    }
    assert progress_patch(status_with(shown["progress"]), None, NOW) == {"progress": None}
    assert progress_patch(status_with(None), progress_line(INDEX_BUILD), later) is None
    assert progress_patch(status_with(None), "no progress here\n", NOW) is None


def test_only_the_running_pod_of_the_job_is_read() -> None:
    def labelled(name: str, job_name: str, phase: str) -> Obj:
        found = pod(phase=phase)
        found["metadata"].update(name=name, labels={"batch.kubernetes.io/job-name": job_name})
        return found

    pods = [
        labelled("old", "shop-migrate-1", "Failed"),
        labelled("other", "shop-migrate-0", "Running"),
        labelled("now", "shop-migrate-1", "Running"),
    ]
    assert running_pod(pods, "shop-migrate-1") == "now"
    assert running_pod(pods[:2], "shop-migrate-1") is None


def test_reconciles_keep_progress_while_the_run_runs_and_drop_it_when_it_ends(
    resource: Callable[..., Obj],
) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    name = written(migrations.decide(read(body), None, [], SETTINGS, NOW)).status["job"]
    shown = INDEX_BUILD.to_json_dict()
    body["status"] = {"phase": "Running", "job": name, "observedGeneration": 1, "progress": shown}
    running = written(migrations.decide(read(body), observe(job(name), [pod()]), [], SETTINGS, NOW))
    assert running.status["phase"] == "Running" and running.status["progress"] == shown
    assert "progress" not in status_patch(body["status"], running.status)
    body["status"] = running.status
    done = observe(job(name, state="complete"), [finished_pod(MIGRATION_SUCCEEDED)])
    ended = written(migrations.decide(read(body), done, [], SETTINGS, NOW))
    assert ended.status["phase"] == "Succeeded" and "progress" not in ended.status
    assert status_patch(body["status"], ended.status)["progress"] is None


def test_a_look_due_sooner_is_not_pushed_back_by_later_reconciles() -> None:
    fired: list[Any] = []
    far = datetime(2100, 1, 1, tzinfo=UTC)
    deadlines = Deadlines(fired.append, clock=lambda: NOW)
    key = ("DatabaseMigration/progress", "shop", "shop")
    deadlines.at_latest(key, far)
    deadlines.at_latest(key, far + timedelta(seconds=15))
    assert deadlines.pending()[key] == far
    deadlines.at_latest(key, far - timedelta(seconds=5))
    assert deadlines.pending()[key] == far - timedelta(seconds=5)
    deadlines.forget(key)
    assert fired == [] and key not in deadlines.pending()


def test_only_running_migrations_get_progress_looks_and_events_do_not_postpone_them() -> None:
    deadlines = Deadlines(lambda _key: None, clock=lambda: NOW)
    key = ("DatabaseMigration", "shop", "shop")
    looks = progress_key("shop", "shop")
    running = Decision(status=DatabaseMigrationStatus(phase=MigrationPhase.RUNNING))
    handlers._progress_looks(deadlines, key, running)
    first = deadlines.pending()[looks]
    assert timedelta(0) < first - datetime.now(UTC) <= LOOK_EVERY
    handlers._progress_looks(deadlines, key, running)  # another event a moment later
    assert deadlines.pending()[looks] == first
    handlers._progress_looks(
        deadlines, key, Decision(status=DatabaseMigrationStatus(phase=MigrationPhase.SUCCEEDED))
    )
    assert looks not in deadlines.pending()
    handlers._progress_looks(deadlines, key, running)
    handlers._progress_looks(deadlines, key, None)  # gone
    assert deadlines.pending() == {}


def test_the_rehearsal_jobs_log_is_read_while_the_migration_rehearses() -> None:
    rehearsing = lenient(
        DatabaseMigrationStatus,
        {"phase": "Rehearsing", "rehearsal": {"generation": 1, "job": "shop-rehearse-1-abc"}},
    )
    assert watched_job(rehearsing) == "shop-rehearse-1-abc"
    running = lenient(DatabaseMigrationStatus, {"phase": "Running", "job": "shop-migrate-1-abc"})
    assert watched_job(running) == "shop-migrate-1-abc"
    awaiting = lenient(
        DatabaseMigrationStatus,
        {
            "phase": "AwaitingApproval",
            "rehearsal": {"generation": 1, "job": "shop-rehearse-1-abc", "outcome": "Succeeded"},
        },
    )
    assert watched_job(awaiting) is None


def test_reconciles_keep_the_rehearsals_progress_while_it_rehearses(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["rehearsal"] = {"location": "shop/", "storage": {"volume": {"claimName": "backups"}}}
    started = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    name = started.status["rehearsal"]["job"]
    shown = INDEX_BUILD.to_json_dict()
    body["status"] = {**started.status, "progress": shown}
    rehearsing = written(
        migrations.decide(read(body), None, [], SETTINGS, NOW, rehearsal_run=observe(job(name), [pod()]))
    )
    assert rehearsing.status["phase"] == "Rehearsing" and rehearsing.status["progress"] == shown
    assert "progress" not in status_patch(body["status"], rehearsing.status)


def test_rehearsing_migrations_get_progress_looks_too() -> None:
    deadlines = Deadlines(lambda _key: None, clock=lambda: NOW)
    rehearsing = Decision(status=DatabaseMigrationStatus(phase=MigrationPhase.REHEARSING))
    handlers._progress_looks(deadlines, ("DatabaseMigration", "shop", "shop"), rehearsing)
    assert progress_key("shop", "shop") in deadlines.pending()
