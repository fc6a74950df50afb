"""`pgwarden backup --copy-to` under faults: the copy's storage (a MinIO of the test's own) stopped during the
run, the run killed or stopped while the copy uploads. The primary backup stays complete, listed and
restorable; the copy target never lists a backup it does not hold whole (what a killed run left there is
debris `prune` removes); a rerun makes a verified copy. No password or storage key is printed.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import execute, table_counts
from faults import (
    GRACE,
    SHOP_SEED,
    Activity,
    Injector,
    Pgwarden,
    Place,
    PrivateMinio,
    assert_no_secret,
    filesystem_place,
    json_report,
    minio_with_canary,
    restart_minio,
    run_pgwarden,
    s3_place,
)

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def shop(canary_pg: LocalPostgres) -> str:
    """The shop (about 40 MB uncompressed: a copy long enough to be caught uploading)."""
    url = canary_pg.create_database()
    execute(url, SHOP_SEED)
    return url


@pytest.fixture
def minio() -> Iterator[PrivateMinio]:
    with minio_with_canary() as server:
        yield server


@pytest.fixture
def places(tmp_path: Path, minio: PrivateMinio) -> tuple[Place, Place]:
    """The primary location (a path) and the copy target (a bucket on the private MinIO)."""
    return filesystem_place(tmp_path / "backups"), s3_place(minio.server, prefix="offsite")


def start_backup(url: str, primary: Place, copy: Place) -> Pgwarden:
    return Pgwarden(
        "backup", url, "--to", primary.uri, "--copy-to", copy.uri, "--compress", "none", "--json",
        env=copy.env,
    )  # fmt: skip


def assert_secrets_kept(result: CompletedProcess[str], password: str, copy: Place) -> None:
    for secret in (password, *copy.secrets):
        assert_no_secret(secret, result.stdout, result.stderr)


def assert_primary_restores(primary: Place, shop: str, pg: LocalPostgres, copy: Place) -> str:
    """Exactly one backup listed at the primary, and it restores count for count; its id."""
    [listed] = primary.listed()
    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_pgwarden(
        "restore", target, "--from", f"{primary.uri}/{listed['id']}", "--create", "--json", env=copy.env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert table_counts(target) == table_counts(shop)
    return str(listed["id"])


def assert_rerun_converges(shop: str, primary: Place, copy: Place) -> None:
    done = run_pgwarden("backup", shop, "--to", primary.uri, "--copy-to", copy.uri, "--json", env=copy.env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json_report(done)
    assert [c["verified"] for c in report["copies"]] == [True], report
    assert [b["id"] for b in copy.listed()] == [report["backup"]["id"]]


def test_the_copy_target_stopped_during_the_dump_fails_only_the_copy(
    canary_pg: LocalPostgres, shop: str, places: tuple[Place, Place], minio: PrivateMinio, inject: Injector
) -> None:
    """The target was writable at the preflight and is gone when the copy starts: the run says the backup
    is complete and its copy failed (exit 1), and the target holds nothing once it is back."""
    primary, copy = places
    with Activity(shop) as activity, start_backup(shop, primary, copy) as run:
        run.wait_until(activity.ran("TO stdout", application=None), "pg_dump streaming table data")
        inject.stop_minio(minio)
        result = run.finish(timeout=180)

    assert_secrets_kept(result, canary_pg.password, copy)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json_report(result)
    assert report["outcome"] == "Failed" and report["backup"]["id"], report
    [failed] = report["copies"]
    assert failed["verified"] is False and failed["error"], report
    assert f"backup {report['backup']['id']} is complete" in report["error"]["message"], report
    assert assert_primary_restores(primary, shop, canary_pg, copy) == report["backup"]["id"]

    restart_minio(minio)
    assert copy.listed() == [] and copy.keys() == [] and copy.pending() == []
    assert_rerun_converges(shop, primary, copy)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_while_the_copy_uploads_leaves_the_primary_listed_and_no_copy_listed(
    canary_pg: LocalPostgres, shop: str, places: tuple[Place, Place], signum: signal.Signals, inject: Injector
) -> None:
    primary, copy = places
    with start_backup(shop, primary, copy) as run:
        run.wait_until(
            lambda: "copying backup" in run.stderr and bool(copy.pending()), "the copy's upload under way"
        )
        inject.signal(run, signum)
        result = run.finish(timeout=GRACE)

    assert_secrets_kept(result, canary_pg.password, copy)
    assert result.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 143), result.stderr
    assert_primary_restores(primary, shop, canary_pg, copy)
    assert copy.listed() == []
    if signum == signal.SIGTERM:  # the run cleaned up after itself
        assert copy.keys() == [] and copy.pending() == []
    copy.prune_debris()
    assert copy.keys() == [] and copy.pending() == []
    assert_rerun_converges(shop, primary, copy)
