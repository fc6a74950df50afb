"""`pgwarden verify-backup` (a restore drill) under faults: its restore's session ended, SIGTERM, its server
restarted, its storage stopped, the source database locked. A drill that did not finish reports Failed (exit 1,
143 for SIGTERM), leaves no `<db>_pgw_drill_…` scratch database, and never marks the backup verified; a rerun
converges; the source database is never touched. No password or storage key is printed.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import execute, table_counts
from faults import (
    GRACE,
    SHOP_SEED,
    Injector,
    Pgwarden,
    Place,
    PrivateMinio,
    assert_no_secret,
    canary_password,
    databases,
    filesystem_place,
    hold_lock,
    json_report,
    minio_with_canary,
    private_postgres,
    restart_minio,
    restart_postgres,
    run_pgwarden,
    s3_place,
)
from pgwarden.storage.manifest import read_manifest


@pytest.fixture(scope="module")
def shop_source(canary_pg: LocalPostgres) -> str:
    """The shop (about 40 MB: a restore long enough to be caught copying `bulk`)."""
    url = canary_pg.create_database()
    execute(url, SHOP_SEED)
    return url


@pytest.fixture(scope="module")
def stored(shop_source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drill-backups") / "backups"
    done = run_pgwarden("backup", shop_source, "--to", root, "--compress", "none", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture
def place(stored: Path, tmp_path: Path) -> Place:
    """A copy of the shop's backup of this test's own (a drill that succeeds marks its manifest)."""
    shutil.copytree(stored, tmp_path / "backups")
    return filesystem_place(tmp_path / "backups")


def start_drill(place: Place, server: LocalPostgres) -> Pgwarden:
    return Pgwarden("verify-backup", place.uri, "--on", server.url(), "--json", env=place.env)


def drill_databases(server: LocalPostgres) -> set[str]:
    return {name for name in databases(server.url()) if "_pgw_drill_" in name}


def drill_sessions(server: LocalPostgres, fragment: str) -> list[int]:
    """Sessions on a drill's scratch database whose statement contains `fragment`."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE strpos(datname, '_pgw_drill_') > 0"
            " AND backend_type = 'client backend' AND state = 'active' AND strpos(query, %s) > 0",
            (fragment,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def copying(server: LocalPostgres) -> Callable[[], bool]:
    """A condition: pg_restore copies table data into the drill's scratch database."""
    return lambda: bool(drill_sessions(server, "COPY "))


def verified(place: Place) -> list[bool]:
    """The manifests' verified flags, read from storage (not from any report)."""
    return [read_manifest(place.storage.child(b["id"])).verified for b in place.listed()]


def assert_drill_failed(result: CompletedProcess[str], code: int = 1) -> dict[str, Any]:
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode == code, f"exit {result.returncode}\n{output}"
    report = json_report(result)
    assert report["outcome"] == "Failed", report
    assert report["error"]["message"], report
    assert report.get("markedVerified") is not True, report
    return report


def assert_no_scratch_left(server: LocalPostgres, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while drill_databases(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert drill_databases(server) == set(), "the drill left its scratch database"


def assert_rerun_converges(place: Place, server: LocalPostgres) -> None:
    done = run_pgwarden("verify-backup", place.uri, "--on", server.url(), "--json", env=place.env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json_report(done)
    assert report["outcome"] == "Succeeded" and report["markedVerified"] is True, report
    assert verified(place) == [True]
    assert drill_databases(server) == set()


def test_pg_terminate_backend_of_the_drills_restore_fails_it_and_marks_nothing_verified(
    canary_pg: LocalPostgres, shop_source: str, place: Place, inject: Injector
) -> None:
    counts = table_counts(shop_source)

    with start_drill(place, canary_pg) as run:
        run.wait_until(copying(canary_pg), "pg_restore copying into the drill's scratch database")
        inject.record("pg_terminate_backend")
        with psycopg.connect(canary_pg.url(), autocommit=True) as conn:
            for pid in drill_sessions(canary_pg, ""):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        result = run.finish(timeout=GRACE)

    assert_drill_failed(result)
    assert_no_secret(canary_pg.password, result.stdout, result.stderr)
    assert_no_scratch_left(canary_pg)
    assert verified(place) == [False]
    assert table_counts(shop_source) == counts
    assert_rerun_converges(place, canary_pg)


def test_sigterm_mid_drill_drops_its_scratch_database_and_marks_nothing_verified(
    canary_pg: LocalPostgres, place: Place, inject: Injector
) -> None:
    with start_drill(place, canary_pg) as run:
        run.wait_until(copying(canary_pg), "pg_restore copying into the drill's scratch database")
        inject.signal(run, signal.SIGTERM)
        result = run.finish(timeout=GRACE)

    report = assert_drill_failed(result, code=143)
    assert "SIGTERM" in report["error"]["message"], report
    assert_no_scratch_left(canary_pg, within=5)  # dropped by the drill itself, not later by its guardian
    assert verified(place) == [False]


def test_a_lock_held_on_every_table_of_the_source_does_not_hold_up_the_drill(
    canary_pg: LocalPostgres, shop_source: str, place: Place, inject: Injector
) -> None:
    """The drill needs storage and a server, never the database the backup came from."""
    with (
        hold_lock(shop_source, "orders"),
        hold_lock(shop_source, "audit"),
        hold_lock(shop_source, "bulk"),
    ):
        inject.record("lock held")
        with start_drill(place, canary_pg) as run:
            result = run.finish(timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert json_report(result)["markedVerified"] is True
    assert verified(place) == [True]
    assert drill_databases(canary_pg) == set()


@pytest.fixture
def private_server() -> Iterator[LocalPostgres]:
    with private_postgres(canary_password()) as server:
        yield server


@pytest.mark.slow
def test_the_drills_server_restarted_mid_restore_fails_it_and_its_scratch_database_goes(
    private_server: LocalPostgres, place: Place, inject: Injector
) -> None:
    with start_drill(place, private_server) as run:
        run.wait_until(copying(private_server), "pg_restore copying into the drill's scratch database")
        inject.stop_postgres(private_server)
        inject.record("postgres restarted")
        restart_postgres(private_server)
        result = run.finish(timeout=90)

    assert_drill_failed(result)
    assert_no_secret(private_server.password, result.stdout, result.stderr)
    assert_no_scratch_left(private_server)  # the guardian drops it once the server is back
    assert verified(place) == [False]
    assert_rerun_converges(place, private_server)


@pytest.fixture
def minio() -> Iterator[PrivateMinio]:
    with minio_with_canary() as server:
        yield server


@pytest.mark.slow
@pytest.mark.s3
def test_the_drills_storage_stopped_mid_download_fails_it_and_marks_nothing_verified(
    canary_pg: LocalPostgres, shop_source: str, minio: PrivateMinio, inject: Injector
) -> None:
    place = s3_place(minio.server)
    done = run_pgwarden(
        "backup", shop_source, "--to", place.uri, "--compress", "none", "--json", env=place.env
    )
    assert done.returncode == 0, done.stdout + done.stderr

    with start_drill(place, canary_pg) as run:
        run.wait_until(copying(canary_pg), "pg_restore copying into the drill's scratch database")
        inject.stop_minio(minio)
        result = run.finish(timeout=120)

    report = assert_drill_failed(result)
    for secret in (canary_pg.password, *place.secrets):
        assert_no_secret(secret, result.stdout, result.stderr)
    assert "backup" in report["error"]["message"], report
    assert_no_scratch_left(canary_pg)
    restart_minio(minio)
    assert verified(place) == [False]
    assert_rerun_converges(place, canary_pg)
