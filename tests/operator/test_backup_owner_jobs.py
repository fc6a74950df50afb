"""Backups belong to their owner, through the real `pgwarden job` (DESIGN.md 3, Backups): two DatabaseBackups
sharing a storage and prefix each write into their own folder, prune only their own backups, and a
DatabaseRestore of one's `latest` never restores the other's dump, even when the other's is newer.

Reproduced first: both Jobs wrote to the same prefix and the retention of one (keepLast 1) deleted the
other's backup. Upgrading keeps the backups written before per-resource folders restorable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import TERMINATION_LOG_ENV
from pgwarden.engine.backup.backup import take_backup
from pgwarden.operator import restores
from pgwarden.operator.jobs import JobSettings, backup_job, restore_job
from pgwarden.operator.resources import typed
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.manifest import list_backups

Obj = dict[str, Any]
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
SETTINGS = JobSettings(image="pgwarden:test")
PATH = "shared"  # the volume path both DatabaseBackups are given


def run_job(manifest: Obj, database_url: str, root: Path, tmp_path: Path) -> Obj:
    """Run the manifest's `pgwarden job` as its pod would, the database Secret holding `uri`; its report."""
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    termination = tmp_path / "termination"
    env.update(
        DATABASE_URL=database_url,
        TMPDIR=str(tmp_path),
        HOME=str(tmp_path),
        PGWARDEN_STORAGE_ROOT=str(root),
        **{TERMINATION_LOG_ENV: str(termination)},
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_")) and k != "DATABASE_URL"}
    done = subprocess.run(
        [PGWARDEN, "job", container["command"][-1]],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report: Obj = json.loads(done.stdout.strip().splitlines()[-1])
    report["exitCode"] = done.returncode
    report["stderr"] = done.stderr
    return report


def database(pg: LocalPostgres, table: str, rows: int) -> str:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        conn.execute(f"INSERT INTO {table} SELECT generate_series(1, {rows})")
    return url


def backup_body(resource: Callable[..., Obj], name: str, uid: str) -> Obj:
    body = resource("backup-once.yaml", "DatabaseBackup", uid=uid)
    body["metadata"]["name"] = name
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": PATH}}
    body["spec"]["retention"] = {"keepLast": 1}
    body["spec"]["verify"] = {"restore": False}
    return body


def back_up(body: Obj, generation: int, url: str, root: Path, tmp_path: Path) -> Obj:
    body["metadata"]["generation"] = generation
    report = run_job(backup_job(DatabaseBackup.model_validate(body), SETTINGS), url, root, tmp_path)
    assert report["exitCode"] == 0, report
    return report


def restore_latest(
    resource: Callable[..., Obj],
    backup: Obj,
    target: str,
    root: Path,
    tmp_path: Path,
    backup_id: str = "latest",
) -> Obj:
    body = resource("restore.yaml", "DatabaseRestore")
    body["spec"]["source"]["backupRef"] = {"name": backup["metadata"]["name"], "id": backup_id}
    body["spec"]["createDatabase"] = False
    body["spec"]["clean"] = False
    restore = DatabaseRestore.model_validate(body)
    source = restores.resolve_source(restore, typed(DatabaseBackup, backup))
    assert not isinstance(source, restores.Waiting), source
    return run_job(restore_job(restore, source, SETTINGS), target, root, tmp_path)


def rows_of(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        names = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE relkind = 'r' AND nspname = 'public'"
        ).fetchall()
        return {str(n): int(conn.execute(f"SELECT count(*) FROM {n}").fetchone()[0]) for (n,) in names}  # type: ignore[index]


@pytest.mark.slow
def test_two_backups_sharing_a_prefix_prune_and_restore_only_their_own(
    resource: Callable[..., Obj], pg: LocalPostgres, tmp_path: Path
) -> None:
    shop, billing = database(pg, "orders", 30), database(pg, "invoices", 7)
    root = tmp_path / "volume"
    shop_backup = backup_body(resource, "shop-backup", "uid-shop")
    billing_backup = backup_body(resource, "billing-backup", "uid-billing")

    first_shop = back_up(shop_backup, 1, shop, root, tmp_path)
    only_billing = back_up(billing_backup, 1, billing, root, tmp_path)
    second_shop = back_up(shop_backup, 2, shop, root, tmp_path)

    assert second_shop["retained"] == 1 and second_shop["pruned"] == [first_shop["backup"]["id"]]
    assert only_billing["retained"] == 1 and not only_billing.get("pruned")
    shop_folder = FilesystemStorage(root / PATH / "shop" / "shop-backup")
    billing_folder = FilesystemStorage(root / PATH / "shop" / "billing-backup")
    assert [b.id for b in list_backups(shop_folder)] == [second_shop["backup"]["id"]]
    assert [b.id for b in list_backups(billing_folder)] == [only_billing["backup"]["id"]]
    assert list_backups(shop_folder)[0].owner == "DatabaseBackup/shop/shop-backup"
    assert second_shop["backup"]["location"] == shop_folder.uri(second_shop["backup"]["id"])

    back_up(billing_backup, 2, billing, root, tmp_path)  # billing's is now the newest backup of all
    shop_backup["status"] = {"lastBackup": second_shop["backup"]}
    target = pg.create_database()
    restored = restore_latest(resource, shop_backup, target, root, tmp_path)
    assert restored["exitCode"] == 0, restored
    assert restored["backup"]["id"] == second_shop["backup"]["id"]
    assert rows_of(target) == {"orders": 30}


@pytest.mark.slow
def test_a_restore_of_another_backups_id_is_refused(
    resource: Callable[..., Obj], pg: LocalPostgres, tmp_path: Path
) -> None:
    shop, billing = database(pg, "orders", 30), database(pg, "invoices", 7)
    root = tmp_path / "volume"
    shop_backup = backup_body(resource, "shop-backup", "uid-shop")
    back_up(shop_backup, 1, shop, root, tmp_path)
    billing_id = back_up(backup_body(resource, "billing-backup", "uid-billing"), 1, billing, root, tmp_path)[
        "backup"
    ]["id"]
    shop_backup["status"] = {"lastBackup": {"id": "x"}}

    refused = restore_latest(
        resource, shop_backup, pg.create_database(), root, tmp_path, backup_id=billing_id
    )

    assert refused["exitCode"] == 2, refused
    assert f"no complete backup {billing_id}" in refused["error"]["message"]


@pytest.mark.slow
def test_after_an_upgrade_the_backups_written_before_per_resource_folders_stay_restorable(
    resource: Callable[..., Obj], pg: LocalPostgres, tmp_path: Path
) -> None:
    shop = database(pg, "orders", 30)
    root = tmp_path / "volume"
    shared = FilesystemStorage(root / PATH)
    # What the operator wrote before: straight under the prefix, no owner recorded.
    legacy = take_backup(shop, shared)
    assert legacy.backup is not None
    manifest_path = root / PATH / legacy.backup.id / "manifest.json"
    data = json.loads(manifest_path.read_text())
    for field in ("owner", "databaseName", "databaseServer"):
        data.pop(field, None)
    manifest_path.write_text(json.dumps(data))
    shop_backup = backup_body(resource, "shop-backup", "uid-shop")
    shop_backup["status"] = {"lastBackup": legacy.backup.model_dump(mode="json", by_alias=True)}

    first = restore_latest(resource, shop_backup, pg.create_database(), root, tmp_path)
    assert first["exitCode"] == 0, first
    assert first["backup"]["id"] == legacy.backup.id
    by_id = restore_latest(
        resource, shop_backup, pg.create_database(), root, tmp_path, backup_id=legacy.backup.id
    )
    assert by_id["exitCode"] == 0, by_id

    after = back_up(shop_backup, 1, shop, root, tmp_path)
    assert after["retained"] == 1 and not after.get("pruned")
    assert [b.id for b in list_backups(shared)] == [legacy.backup.id], "never pruned by the operator"
    (warning,) = after["warnings"]
    assert "1 backup" in warning and str(root / PATH) in warning and "pgwarden prune" in warning


@pytest.mark.slow
def test_a_backup_job_behind_a_held_lock_fails_after_the_specs_lock_wait_timeout(
    resource: Callable[..., Obj], pg: LocalPostgres, tmp_path: Path
) -> None:
    url = database(pg, "orders", 3)
    root = tmp_path / "volume"
    body = backup_body(resource, "shop-backup", "uid-shop")
    body["spec"]["lockWaitTimeout"] = "2s"
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        report = run_job(backup_job(DatabaseBackup.model_validate(body), SETTINGS), url, root, tmp_path)

    assert report["exitCode"] == 1, report
    message = report["error"]["message"]
    assert "--lock-wait-timeout 2s" in message and "another session holds" in message
    assert list_backups(FilesystemStorage(root / PATH / "shop" / "shop-backup")) == []
    assert not [p for p in (root / PATH).rglob("*") if p.is_file()]
