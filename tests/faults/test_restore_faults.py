"""`pgwarden restore` under faults (issue 9): killed or terminated while downloading, while pg_restore runs
and while counting; pg_restore's session ended; PostgreSQL stopped; locked out; timed out. After each fault
a restore with --create leaves no half-created database (or its rerun succeeds), a run that survived the
fault reported it truthfully, a rerun restores count for count, and no secret is printed.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import clone_database, execute, table_counts
from faults import (
    GRACE,
    SHOP_SEED,
    Activity,
    Injector,
    Pgwarden,
    Place,
    assert_no_secret,
    canary_password,
    databases,
    filesystem_place,
    hold_lock,
    json_report,
    private_postgres,
    restart_postgres,
    run_pgwarden,
    s3_place,
    set_statement_timeout,
    wait_sessions_gone,
)


@dataclass(frozen=True)
class Stored:
    """A complete backup of the shop: where it is, and the rows per table it holds."""

    place: Place
    location: str
    counts: dict[str, int]


@pytest.fixture(scope="module")
def shop_source(canary_pg: LocalPostgres) -> str:
    url = canary_pg.create_database()
    execute(url, SHOP_SEED)
    return url


def back_up(url: str, place: Place) -> Stored:
    done = run_pgwarden("backup", url, "--to", place.uri, "--json", env=place.env)
    assert done.returncode == 0, done.stdout + done.stderr
    return Stored(place, json_report(done)["backup"]["location"], table_counts(url))


@pytest.fixture(scope="module")
def stored_on_filesystem(shop_source: str, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    return back_up(shop_source, filesystem_place(tmp_path_factory.mktemp("backups")))


@pytest.fixture(scope="module")
def stored_on_s3(shop_source: str, s3: s3server.S3Server) -> Stored:
    return back_up(shop_source, s3_place(s3))


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def stored(request: pytest.FixtureRequest) -> Stored:
    """The shop's backup on each backend in turn."""
    fixture: Stored = request.getfixturevalue(f"stored_on_{request.param}")
    return fixture


def start_restore(target: str, stored: Stored, *args: str) -> Pgwarden:
    return Pgwarden("restore", target, "--from", stored.location, "--json", *args, env=stored.place.env)


def new_target(pg: LocalPostgres) -> tuple[str, str]:
    name = f"r_{secrets.token_hex(4)}"
    return name, pg.url(name)


def existing_target(pg: LocalPostgres, shop_source: str) -> str:
    """A database holding the shop already, plus a table of its own that is not in the backup: a lock on
    it holds up the counting after pg_restore, and nothing else."""
    url = clone_database(shop_source, pg.url())
    execute(url, "CREATE TABLE not_in_backup (x int)")
    return url


# --- what must hold after a fault -----------------------------------------------------------------------


def assert_secrets_kept(result: CompletedProcess[str], password: str, stored: Stored) -> None:
    assert_no_secret(password, result.stdout, result.stderr)
    for secret in stored.place.secrets:
        assert_no_secret(secret, result.stdout, result.stderr)


def assert_failure_reported(result: CompletedProcess[str]) -> dict[str, Any]:
    """The run survived the fault: a non-zero exit and one JSON report that says it failed and why."""
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode in (1, 143), f"exit {result.returncode}\n{output}"
    report = json_report(result)
    assert report["outcome"] == "Failed", report
    assert report.get("error", {}).get("message"), report
    return report


def assert_rerun_converges(target: str, stored: Stored, *args: str) -> None:
    """The same restore without the fault succeeds and restores count for count."""
    done = run_pgwarden("restore", target, "--from", stored.location, "--json", *args, env=stored.place.env)
    assert done.returncode == 0, f"the rerun failed:\n{done.stdout}{done.stderr}"
    assert json_report(done)["outcome"] == "Succeeded"
    counts = table_counts(target)
    assert {t: counts.get(t) for t in stored.counts} == stored.counts


# --- SIGKILL and SIGTERM at each phase --------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    reached: Callable[[Pgwarden, Activity], Callable[[], bool]]


CREATE_PHASES = [
    Phase("downloading", reached=lambda run, _a: run.stderr_says("downloading and verifying")),
    Phase("pg_restore-running", reached=lambda _r, activity: activity.running("COPY ", application=None)),
]


@pytest.mark.parametrize("phase", CREATE_PHASES, ids=[p.name for p in CREATE_PHASES])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_during_a_restore_with_create_leaves_no_half_created_database(
    canary_pg: LocalPostgres, stored: Stored, phase: Phase, signum: signal.Signals, inject: Injector
) -> None:
    name, target = new_target(canary_pg)

    with Activity(target) as activity, start_restore(target, stored, "--create") as run:
        run.wait_until(phase.reached(run, activity), phase.name)
        inject.signal(run, signum)
        result = run.finish(timeout=GRACE)
    wait_sessions_gone(target, ("pgwarden", "pg_restore"))

    assert_secrets_kept(result, canary_pg.password, stored)
    if signum == signal.SIGTERM:
        assert_failure_reported(result)
        assert name not in databases(canary_pg.url()), "the interrupted restore left its database behind"
    # A database a killed run created must not stand in the way of the rerun.
    assert_rerun_converges(target, stored, "--create")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_while_counting_the_restored_rows_ends_the_run_and_a_rerun_converges(
    canary_pg: LocalPostgres, shop_source: str, stored: Stored, signum: signal.Signals, inject: Injector
) -> None:
    target = existing_target(canary_pg, shop_source)

    with Activity(target) as activity, hold_lock(target, "not_in_backup"):
        inject.record("lock held")
        with start_restore(target, stored, "--clean") as run:
            run.wait_until(activity.running("count(", waiting_on_lock=True), "counting")
            inject.signal(run, signum)
            result = run.finish(timeout=GRACE)  # the lock is still held: the count cannot finish
    wait_sessions_gone(target, ("pgwarden", "pg_restore"))

    assert_secrets_kept(result, canary_pg.password, stored)
    if signum == signal.SIGTERM:
        assert_failure_reported(result)
    execute(target, "DROP TABLE not_in_backup")  # the device of the fault, not the restore's business
    assert_rerun_converges(target, stored, "--clean")


# --- its session ended, its server stopped ---------------------------------------------------------------


def test_pg_terminate_backend_of_pg_restore_fails_cleanly(
    canary_pg: LocalPostgres, stored: Stored, inject: Injector
) -> None:
    name, target = new_target(canary_pg)

    with Activity(target) as activity, start_restore(target, stored, "--create") as run:
        run.wait_until(activity.running("COPY ", application=None), "pg_restore copying a table")
        inject.terminate_backends(activity)  # pg_restore's session carries pgwarden's name
        result = run.finish(timeout=GRACE)

    assert_secrets_kept(result, canary_pg.password, stored)
    assert_failure_reported(result)
    assert name not in databases(canary_pg.url()), "the failed restore left its database behind"
    assert_rerun_converges(target, stored, "--create")


@pytest.fixture
def private_server() -> Iterator[LocalPostgres]:
    with private_postgres(canary_password()) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["stopped", "restarted"])
def test_postgres_stopped_mid_restore_leaves_no_half_created_database_or_a_rerun_succeeds(
    private_server: LocalPostgres, stored_on_filesystem: Stored, restart: bool, inject: Injector
) -> None:
    stored = stored_on_filesystem
    _name, target = new_target(private_server)

    with Activity(target) as activity, start_restore(target, stored, "--create") as run:
        run.wait_until(activity.running("COPY ", application=None), "pg_restore copying a table")
        inject.stop_postgres(private_server)
        if restart:
            inject.record("postgres restarted")
            restart_postgres(private_server)
        result = run.finish(timeout=60)
    if not restart:
        restart_postgres(private_server)

    assert_secrets_kept(result, private_server.password, stored)
    assert_failure_reported(result)
    assert_rerun_converges(target, stored, "--create")


# --- locks held by another session, timeouts ------------------------------------------------------------


@pytest.mark.slow
def test_a_lock_held_on_a_table_the_restore_replaces_ends_the_run_in_bounded_time(
    canary_pg: LocalPostgres, shop_source: str, stored_on_filesystem: Stored, inject: Injector
) -> None:
    stored = stored_on_filesystem
    target = clone_database(shop_source, canary_pg.url())

    with (
        hold_lock(target, "orders", "ACCESS SHARE"),
        start_restore(target, stored, "--clean", "--lock-wait-timeout", "2s") as run,
    ):
        inject.record("lock held")
        started = time.monotonic()
        result = run.finish(timeout=60)
        elapsed = time.monotonic() - started

    assert elapsed < 30, f"a 2s lock wait timeout let the restore wait {elapsed:.0f}s"
    assert_secrets_kept(result, canary_pg.password, stored)
    report = assert_failure_reported(result)
    assert "lock" in report["error"]["message"], report
    assert_rerun_converges(target, stored, "--clean")


def test_terminate_connections_clears_a_session_holding_a_lock_on_a_table_the_restore_replaces(
    canary_pg: LocalPostgres, shop_source: str, stored_on_filesystem: Stored, inject: Injector
) -> None:
    stored = stored_on_filesystem
    target = clone_database(shop_source, canary_pg.url())

    with hold_lock(target, "orders", "ACCESS SHARE") as holder:
        inject.record("lock held")
        done = run_pgwarden(
            "restore",
            target,
            "--from",
            stored.location,
            "--clean",
            "--terminate-connections",
            "--json",
            env=stored.place.env,
            timeout=120,
        )
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")  # its session was ended

    assert_secrets_kept(done, canary_pg.password, stored)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json_report(done)
    assert report["outcome"] == "Succeeded" and report["terminatedConnections"] >= 1
    assert {t: table_counts(target).get(t) for t in stored.counts} == stored.counts


def test_a_tiny_statement_timeout_on_the_target_fails_the_restore_with_a_report(
    canary_pg: LocalPostgres, shop_source: str, stored: Stored, inject: Injector
) -> None:
    inject.record("statement_timeout")
    target = clone_database(shop_source, canary_pg.url())
    name = target.rsplit("/", 1)[1]
    set_statement_timeout(canary_pg.url(), name, "1ms")

    result = run_pgwarden(
        "restore", target, "--from", stored.location, "--clean", "--json", env=stored.place.env
    )

    assert_secrets_kept(result, canary_pg.password, stored)
    report = assert_failure_reported(result)
    assert "timeout" in report["error"]["message"], report
    set_statement_timeout(canary_pg.url(), name, None)
    assert_rerun_converges(target, stored, "--clean")
