"""`pgwarden backup` under faults (issue 9): killed or terminated at each phase, its sessions ended, its
PostgreSQL or its MinIO stopped mid-run, locked out, timed out. After each fault no partial backup is
listed, a run that survived the fault reported it truthfully and left nothing at a final key, debris of a
killed run is what `prune` removes, a rerun makes a backup that restores count for count, and neither the
database password (a canary) nor the storage secret key is ever printed.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

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
    minio_with_canary,
    private_postgres,
    restart_minio,
    restart_postgres,
    run_pgwarden,
    s3_place,
    set_statement_timeout,
    wait_sessions_gone,
)

SESSIONS = ("pgwarden", "pg_dump")


@pytest.fixture(scope="module")
def shop_template(canary_pg: LocalPostgres) -> str:
    url = canary_pg.create_database()
    execute(url, SHOP_SEED)
    return url


@pytest.fixture
def shop(canary_pg: LocalPostgres, shop_template: str) -> str:
    """A fresh copy of the shop (40 MB) on the canary server."""
    return clone_database(shop_template, canary_pg.url())


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """An empty backup location on each backend in turn."""
    if request.param == "filesystem":
        return filesystem_place(tmp_path / "backups")
    server: s3server.S3Server = request.getfixturevalue("s3")
    return s3_place(server)


def start_backup(url: str, place: Place, *args: str, env: dict[str, str] | None = None) -> Pgwarden:
    # gzip at its slowest level keeps pg_dump streaming for a couple of seconds (pgwarden compresses the
    # stream itself, so pg_dump waits on it): long enough to catch the dump and its upload at work.
    return Pgwarden(
        "backup",
        url,
        "--to",
        place.uri,
        "--compress",
        "gzip:9",
        "--json",
        *args,
        env={**place.env, **(env or {})},
    )


# --- what must hold after a fault -----------------------------------------------------------------------


def assert_secrets_kept(result: CompletedProcess[str], password: str, place: Place) -> None:
    assert_no_secret(password, result.stdout, result.stderr)
    for secret in place.secrets:
        assert_no_secret(secret, result.stdout, result.stderr)


def assert_failure_reported(result: CompletedProcess[str]) -> dict[str, Any]:
    """The run survived the fault: a non-zero exit and one JSON report that says it failed and why."""
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode in (1, 143), f"exit {result.returncode}\n{output}"
    report = json_report(result)
    assert report["outcome"] == "Failed", report
    assert report.get("error", {}).get("message"), report
    assert "backup" not in report, f"a failed run reports a backup: {report}"
    return report


def assert_nothing_left(place: Place) -> None:
    """Nothing listed, nothing at a final key, no upload left open: a failed backup never existed."""
    assert place.listed() == []
    assert place.keys() == [], "a failed backup left objects at their final keys"
    assert place.pending() == [], "a failed backup left an upload or a partial file"


def assert_only_debris(place: Place) -> None:
    """After a SIGKILL: nothing listed, and what the killed run left is debris that prune removes."""
    assert place.listed() == []
    place.prune_debris()
    assert place.keys() == [] and place.pending() == []


def scratch_databases(pg: LocalPostgres) -> set[str]:
    """The scratch databases `backup --verify` restores into (other tests' leftovers included)."""
    return {name for name in databases(pg.url()) if name.startswith("pgwarden_verify_")}


def assert_no_new_scratch_database(pg: LocalPostgres, before: set[str]) -> None:
    left = scratch_databases(pg) - before
    assert not left, f"scratch databases of the verification left behind: {left}"


def assert_rerun_converges(url: str, place: Place, pg: LocalPostgres) -> None:
    """A backup taken after the fault is listed, and restores count for count."""
    done = run_pgwarden("backup", url, "--to", place.uri, "--json", env=place.env)
    assert_secrets_kept(done, pg.password, place)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json_report(done)
    assert [b["id"] for b in place.listed()] == [report["backup"]["id"]]
    target = pg.url(f"r_{secrets.token_hex(4)}")
    restored = run_pgwarden(
        "restore", target, "--from", report["backup"]["location"], "--create", "--json", env=place.env
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert table_counts(target) == table_counts(url)


# --- SIGKILL and SIGTERM at each phase --------------------------------------------------------------------


# An age public key; its identity is not needed, the sealed backups here are never restored.
TEST_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


@dataclass(frozen=True)
class Phase:
    """A phase of a backup: how it is recognised, what holds the run there, what the run is given."""

    name: str
    reached: Callable[[Pgwarden, Activity, Place, LocalPostgres], Callable[[], bool]]
    hold: Callable[[str], AbstractContextManager[Any]] | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _dumping(run: Pgwarden, activity: Activity, place: Place, _pg: LocalPostgres) -> Callable[[], bool]:
    """pg_dump has begun to stream table data (its sessions carry pgwarden's application name) and the
    dump is being written: a partial file, or a multipart upload with a part in it."""
    copied = activity.ran("TO stdout", application=None)
    uploading = place.upload_in_progress()
    return lambda: copied() and uploading()


PHASES = [
    # Each login takes 3 s (post_auth_delay), so the run is caught while its first connection is made.
    Phase(
        "connecting",
        reached=lambda run, _a, _p, pg: run.connecting_to(pg.port),
        env={"PGOPTIONS": "-c post_auth_delay=3"},
    ),
    Phase(
        "counting",
        reached=lambda _r, activity, _p, _pg: activity.running("count(", waiting_on_lock=True),
        hold=lambda url: hold_lock(url, "audit"),
    ),
    Phase("dumping-and-uploading", reached=_dumping),
    # pg_dump's directory format: its files are uploaded, two at a time, once pg_dump has written them.
    Phase("uploading-directory-files", reached=_dumping, args=("--format", "directory", "--jobs", "2")),
    # Sealed with age on a thread of its own between the compression and the upload.
    Phase("sealing-and-uploading", reached=_dumping, args=("--encrypt-to", TEST_RECIPIENT)),
    # --verify restores the stored dump before the manifest is written: the dump sits at its final key.
    Phase(
        "stored-before-the-manifest",
        reached=lambda _r, _a, place, _pg: place.dump_stored_without_manifest(),
        args=("--verify",),
    ),
]


@pytest.mark.parametrize("phase", PHASES, ids=[p.name for p in PHASES])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_at_any_phase_leaves_no_listed_backup_and_a_rerun_converges(
    shop: str,
    canary_pg: LocalPostgres,
    place: Place,
    phase: Phase,
    signum: signal.Signals,
    inject: Injector,
) -> None:
    hold = phase.hold(shop) if phase.hold else contextlib.nullcontext()
    scratch = scratch_databases(canary_pg)

    with Activity(shop) as activity, hold, start_backup(shop, place, *phase.args, env=phase.env) as run:
        run.wait_until(phase.reached(run, activity, place, canary_pg), phase.name)
        inject.signal(run, signum)
        result = run.finish(timeout=GRACE)
    wait_sessions_gone(shop, SESSIONS)

    assert_secrets_kept(result, canary_pg.password, place)
    if signum == signal.SIGTERM:
        assert_failure_reported(result)
        assert_nothing_left(place)
        assert_no_new_scratch_database(canary_pg, scratch)
    else:
        assert_only_debris(place)
    assert_rerun_converges(shop, place, canary_pg)


# --- its sessions ended, its servers stopped --------------------------------------------------------------


def test_pg_terminate_backend_of_its_sessions_mid_dump_fails_cleanly(
    shop: str, canary_pg: LocalPostgres, place: Place, inject: Injector
) -> None:
    with Activity(shop) as activity, start_backup(shop, place) as run:
        run.wait_until(activity.running("TO stdout", application=None), "pg_dump copying a table")
        inject.terminate_backends(activity)  # pg_dump's sessions carry pgwarden's name too
        result = run.finish(timeout=GRACE)

    assert_secrets_kept(result, canary_pg.password, place)
    assert_failure_reported(result)
    assert_nothing_left(place)
    assert_rerun_converges(shop, place, canary_pg)


@pytest.fixture
def private_shop() -> Iterator[tuple[LocalPostgres, str]]:
    """The shop on a PostgreSQL server of this test's own (canary password), which the test may stop."""
    with private_postgres(canary_password()) as server:
        url = server.create_database()
        execute(url, SHOP_SEED)
        yield server, url


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["stopped", "restarted"])
def test_postgres_stopped_mid_dump_fails_cleanly_and_a_rerun_converges(
    private_shop: tuple[LocalPostgres, str], tmp_path: Path, restart: bool, inject: Injector
) -> None:
    server, url = private_shop
    place = filesystem_place(tmp_path / "backups")

    with Activity(url) as activity, start_backup(url, place) as run:
        run.wait_until(_dumping(run, activity, place, server), "dumping")
        inject.stop_postgres(server)
        if restart:
            inject.record("postgres restarted")
            restart_postgres(server)
        result = run.finish(timeout=60)
    if not restart:
        restart_postgres(server)

    assert_secrets_kept(result, server.password, place)
    assert_failure_reported(result)
    assert_nothing_left(place)
    assert_rerun_converges(url, place, server)


@pytest.fixture
def private_minio() -> Iterator[Any]:
    with minio_with_canary() as minio:
        yield minio


@pytest.mark.slow
@pytest.mark.s3
def test_minio_stopped_mid_upload_fails_cleanly_and_a_rerun_converges(
    shop: str, canary_pg: LocalPostgres, private_minio: Any, inject: Injector
) -> None:
    place = s3_place(private_minio.server)

    with Activity(shop) as activity, start_backup(shop, place) as run:
        run.wait_until(_dumping(run, activity, place, canary_pg), "uploading")
        inject.stop_minio(private_minio)
        started = time.monotonic()
        result = run.finish(timeout=180)
        elapsed = time.monotonic() - started
    restart_minio(private_minio)

    assert_secrets_kept(result, canary_pg.password, place)
    assert_failure_reported(result)
    assert elapsed < 120, f"the backup took {elapsed:.0f}s to notice its storage was gone"
    assert place.listed() == []
    assert place.keys() == [], "an object at a final key without its manifest"
    place.prune_debris()  # the upload could not be aborted while MinIO was down
    assert place.pending() == []
    assert_rerun_converges(shop, place, canary_pg)


@pytest.mark.slow
@pytest.mark.s3
def test_minio_stopped_before_the_manifest_leaves_nothing_listed_and_only_debris(
    shop: str, canary_pg: LocalPostgres, private_minio: Any, inject: Injector
) -> None:
    """With the storage gone, nothing can delete the stored dump: what the guarantee can be is that it is
    never listed (no manifest) and that prune removes it once the storage is back."""
    place = s3_place(private_minio.server)
    scratch = scratch_databases(canary_pg)

    with start_backup(shop, place, "--verify") as run:
        run.wait_until(place.dump_stored_without_manifest(), "the dump stored, its manifest not yet")
        inject.stop_minio(private_minio)
        result = run.finish(timeout=180)
    restart_minio(private_minio)

    assert_secrets_kept(result, canary_pg.password, place)
    assert_failure_reported(result)
    assert_no_new_scratch_database(canary_pg, scratch)
    assert_only_debris(place)
    assert_rerun_converges(shop, place, canary_pg)


# --- locks held by another session, timeouts ------------------------------------------------------------


def test_a_lock_held_on_a_dumped_table_ends_the_backup_in_bounded_time(
    shop: str, canary_pg: LocalPostgres, place: Place, inject: Injector
) -> None:
    with hold_lock(shop, "audit"), start_backup(shop, place, "--lock-wait-timeout", "2s") as run:
        inject.record("lock held")
        started = time.monotonic()
        result = run.finish(timeout=60)
        elapsed = time.monotonic() - started

    assert elapsed < 30, f"a 2s lock wait timeout let the backup wait {elapsed:.0f}s"
    assert_secrets_kept(result, canary_pg.password, place)
    report = assert_failure_reported(result)
    assert "lock" in report["error"]["message"], report
    assert_nothing_left(place)
    assert_rerun_converges(shop, place, canary_pg)


def test_a_tiny_statement_timeout_on_the_database_fails_the_backup_with_a_report(
    shop: str, canary_pg: LocalPostgres, place: Place, inject: Injector
) -> None:
    inject.record("statement_timeout")
    name = shop.rsplit("/", 1)[1]
    set_statement_timeout(canary_pg.url(), name, "1ms")

    result = run_pgwarden("backup", shop, "--to", place.uri, "--compress", "none", "--json", env=place.env)

    assert_secrets_kept(result, canary_pg.password, place)
    report = assert_failure_reported(result)
    assert "timeout" in report["error"]["message"], report
    assert_nothing_left(place)
    set_statement_timeout(canary_pg.url(), name, None)
    assert_rerun_converges(shop, place, canary_pg)
