"""A second copy (issue 12, item 3): `backup --copy-to URI` copies the complete backup to further storages,
verifies it there by checksum, and the copy is a backup of its own: listed, restorable, pruned there."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from backup_support import SEED_ROWS, BackupPlace, all_rows, backup, run_cli, s3_place
from pgwarden_testing import localpg, s3server

from pgwarden.engine.backup.backup import BackupOptions, take_backup
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.manifest import list_backups


@pytest.mark.s3
def test_a_copy_survives_the_deletion_of_the_primary_and_restores_row_for_row(
    shop_db: str,
    pg: localpg.LocalPostgres,
    tmp_path: Path,
    s3: s3server.S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary = BackupPlace(str(tmp_path / "primary"), {}, FilesystemStorage(tmp_path / "primary"))
    offsite = s3_place(s3, monkeypatch, prefix="offsite")
    report = backup(shop_db, primary, "--copy-to", offsite.uri, env=offsite.env)
    backup_id = report["backup"]["id"]
    [copy] = report["copies"]
    assert copy == {
        "location": f"{offsite.uri}/{backup_id}",
        "sha256": report["backup"]["sha256"],
        "verified": True,
        "serverSide": False,
        "sizeBytes": report["backup"]["sizeBytes"],
        "durationSeconds": copy["durationSeconds"],
    }

    primary_storage = primary.open()
    primary_storage.delete([obj.key for obj in primary_storage.list_objects()])
    assert list_backups(primary_storage) == []
    listed = run_cli("backups", offsite.uri, "--json", env=offsite.env)
    assert [b["id"] for b in json.loads(listed.stdout)["backups"]] == [backup_id]

    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli("restore", target, "--from", offsite.uri, "--create", "--json", env=offsite.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == SEED_ROWS
    assert all_rows(target) == all_rows(shop_db)


@pytest.mark.s3
def test_a_copy_within_the_same_s3_service_is_made_server_side_and_verified(
    shop_db: str, s3: s3server.S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = s3_place(s3, monkeypatch, prefix="nightly")
    second = s3_place(s3, monkeypatch, prefix="vault")
    report = backup(shop_db, primary, "--format", "directory", "--jobs", "2", "--copy-to", second.uri)
    [copy] = report["copies"]
    assert copy["verified"] is True and copy["serverSide"] is True
    [listed] = list_backups(second.open())
    assert listed.id == report["backup"]["id"] and listed.sha256 == report["backup"]["sha256"]
    assert sorted(o.key for o in second.open().list_objects()) == sorted(
        o.key for o in primary.open().list_objects()
    )


def test_prune_applies_retention_at_a_copy_location_and_leaves_the_primary_alone(
    shop_db: str, tmp_path: Path
) -> None:
    primary = BackupPlace(str(tmp_path / "primary"))
    offsite = str(tmp_path / "offsite")
    ids = [backup(shop_db, primary, "--copy-to", offsite)["backup"]["id"] for _ in range(3)]
    done = run_cli("prune", offsite, "--keep-last", "1", "--json")
    assert done.returncode == 0, done.stderr
    pruned = json.loads(done.stdout)
    assert sorted(item["id"] for item in pruned["deleted"]) == sorted(ids[:2])
    remaining = json.loads(run_cli("backups", offsite, "--json").stdout)
    assert [b["id"] for b in remaining["backups"]] == [ids[2]]
    kept = json.loads(run_cli("backups", primary.uri, "--json").stdout)
    assert sorted(b["id"] for b in kept["backups"]) == sorted(ids)


def test_a_copy_target_that_is_the_primary_is_refused_with_exit_2_and_nothing_is_stored(
    shop_db: str, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    done = run_cli("backup", shop_db, "--to", str(root), "--copy-to", str(root), "--json")
    assert done.returncode == 2
    assert "--copy-to" in json.loads(done.stdout)["error"]["message"]
    assert not root.exists() or not any(root.rglob("manifest.json"))


def test_a_copy_target_that_cannot_be_written_stops_the_backup_before_it_starts(
    shop_db: str, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    done = run_cli("backup", shop_db, "--to", str(root), "--copy-to", str(blocked / "offsite"), "--json")
    assert done.returncode == 1
    message = json.loads(done.stdout)["error"]["message"]
    assert "--copy-to" in message and "nothing was backed up" in message
    assert not any(root.rglob("manifest.json"))


def test_the_engine_takes_copy_targets_a_caller_built_with_their_own_settings(
    shop_db: str, tmp_path: Path
) -> None:
    offsite = FilesystemStorage(tmp_path / "built-by-the-caller")
    report = take_backup(shop_db, str(tmp_path / "primary"), BackupOptions(copy_to=[offsite]))
    assert report.outcome == "Succeeded"
    assert report.copies is not None and [c.verified for c in report.copies] == [True]
    assert [m.id for m in list_backups(offsite)] == [report.backup.id if report.backup else None]
