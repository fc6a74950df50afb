"""Restore drills (issue 12, item 1): `pgwarden verify-backup` restores the newest complete backup into a
scratch database, compares it with its manifest, records a match there, and drops the scratch database."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import (
    SEED_ROWS,
    SEED_TABLES,
    BackupPlace,
    backup,
    flip_byte,
    run_cli,
    start_paused,
    wait_for_pause,
)
from pgwarden_testing import localpg
from pyrage import x25519

from pgwarden.storage.manifest import MANIFEST, read_manifest, write_manifest


def drill(pg: localpg.LocalPostgres, place: BackupPlace, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("verify-backup", place.uri, "--on", pg.url(), "--json", *flags, env=place.env)
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def scratch_left(pg: localpg.LocalPostgres) -> list[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute(
            r"SELECT datname FROM pg_database WHERE datname LIKE '%\_pgw\_drill\_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def drop_database(pg: localpg.LocalPostgres, url: str) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_a_drill_restores_the_newest_backup_without_its_source_and_records_it_verified(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    older = backup(shop_db, place)["backup"]["id"]
    newest = backup(shop_db, place)["backup"]["id"]
    drop_database(pg, shop_db)  # the drill needs nothing but storage and a server: the source is gone

    code, report = drill(pg, place)
    assert code == 0, report
    assert report["outcome"] == "Succeeded"
    assert report["backup"]["id"] == newest and report["backup"]["verified"] is True
    assert report["tables"] == SEED_TABLES and report["rows"] == SEED_ROWS
    assert report["verification"]["matchesBackup"] is True
    assert report["verification"]["schemaMatches"] is True
    assert report["markedVerified"] is True and report["scratchDropped"] is True
    assert "_pgw_drill_" in report["scratchDatabase"]
    assert report["restoreSeconds"] > 0
    assert scratch_left(pg) == []

    storage = place.open()
    assert read_manifest(storage.child(newest)).verified is True
    assert read_manifest(storage.child(older)).verified is False
    listed = json.loads(run_cli("backups", place.uri, "--json", env=place.env).stdout)
    assert {b["id"]: b["verified"] for b in listed["backups"]} == {newest: True, older: False}


def test_a_drill_finds_a_flipped_byte_reports_it_and_leaves_nothing_behind(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    backup_id = backup(shop_db, place)["backup"]["id"]
    stored = place.open().child(backup_id)
    flip_byte(stored, read_manifest(stored).dump_file)

    code, report = drill(pg, place)
    assert code == 1
    assert report["outcome"] == "Failed"
    assert "corrupted" in report["error"]["message"]
    assert report.get("markedVerified") is None
    assert read_manifest(stored).verified is False
    assert scratch_left(pg) == []


def test_a_drill_reports_a_table_the_manifest_records_but_the_restore_lacks(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    backup_id = backup(shop_db, place)["backup"]["id"]
    stored = place.open().child(backup_id)
    manifest = read_manifest(stored)
    claimed = manifest.model_copy(
        update={"per_table": {**manifest.per_table, "public.invoices": 12}, "tables": manifest.tables + 1}
    )
    stored.delete([MANIFEST])
    write_manifest(stored, claimed)

    code, report = drill(pg, place)
    assert code == 1
    assert report["outcome"] == "Failed"
    [difference] = report["verification"]["differences"]
    assert difference["table"] == "public.invoices" and difference["expected"] == 12
    assert "missing after the restore" in difference["detail"]
    assert "row counts differ in 1 table" in report["error"]["message"]
    assert read_manifest(stored).verified is False
    assert scratch_left(pg) == []


def test_a_drill_of_a_sealed_backup_needs_its_identity(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, tmp_path: Path
) -> None:
    identity = x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{identity}\n")
    backup(shop_db, place, "--encrypt-to", str(identity.to_public()))

    code, refused = drill(pg, place)
    assert code == 2
    assert "--identity" in refused["error"]["message"]
    assert scratch_left(pg) == []

    code, report = drill(pg, place, "--identity", str(key_file))
    assert code == 0, report
    assert report["verification"]["matchesBackup"] is True


def test_retention_keeps_the_newest_verified_backup_a_drill_marked(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    ids = [backup(shop_db, place)["backup"]["id"] for _ in range(3)]
    code, _ = drill(pg, place, "--id", ids[0])
    assert code == 0
    pruned = json.loads(run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env).stdout)
    assert [item["id"] for item in pruned["deleted"]] == [ids[1]]
    kept = {item["id"]: item["reason"] for item in pruned["kept"]}
    assert "newest verified backup" in kept[ids[0]]


@pytest.mark.parametrize("flags", [("--format", "directory", "--jobs", "2")], ids=["directory"])
def test_a_drill_of_a_directory_backup_restores_in_parallel(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, flags: tuple[str, ...]
) -> None:
    backup(shop_db, place, *flags)
    code, report = drill(pg, place, "--jobs", "2")
    assert code == 0, report
    assert report["rows"] == SEED_ROWS
    assert scratch_left(pg) == []


def test_a_drill_with_no_backup_under_the_prefix_is_refused_with_exit_2(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    done = run_cli(
        "verify-backup", str(tmp_path / f"empty-{secrets.token_hex(3)}"), "--on", pg.url(), "--json"
    )
    assert done.returncode == 2
    assert "no complete backup" in json.loads(done.stdout)["error"]["message"]


def test_a_drill_killed_half_way_through_its_restore_leaves_no_scratch_database(
    bulky_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    backup(bulky_db, place, "--compress", "none")  # ~40 MB: the pause comes after 20 MiB were restored
    process = start_paused(
        "verify-backup", place.uri, "--on", pg.url(), "--json", env=place.env, pause_at="restore-mid-stream"
    )
    wait_for_pause(process)
    assert scratch_left(pg), "the drill should be restoring into its scratch database now"
    process.kill()
    process.wait(timeout=30)

    deadline = time.monotonic() + 60
    while scratch_left(pg) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert scratch_left(pg) == []
