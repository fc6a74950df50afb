"""What must never happen: a killed backup listed as complete, a corrupted dump restored, a too-old pg_dump
used, a pool of debris left forever."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from backup_support import BackupPlace, flip_byte, run_cli, start_paused, wait_for_pause
from pgwarden_testing import localpg

from pgwarden.storage.manifest import MANIFEST, list_backups, read_manifest, write_manifest

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def start_backup(url: str, place: BackupPlace, pause_at: str, *flags: str) -> subprocess.Popen[str]:
    return start_paused("backup", url, "--to", place.uri, *flags, env=place.env, pause_at=pause_at)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-preflight", "mid-stream", "before-commit", "before-manifest"])
def test_a_backup_killed_at_any_point_leaves_no_listed_backup_and_prune_clears_its_debris(
    bulky_db: str, place: BackupPlace, point: str
) -> None:
    process = start_backup(bulky_db, place, point, "--compress", "none")
    wait_for_pause(process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    listing = run_cli("backups", place.uri, "--json", env=place.env)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["count"] == 0
    storage = place.open()
    assert list_backups(storage) == []
    assert not any(obj.key.endswith(MANIFEST) for obj in storage.list_objects())
    if point == "mid-stream" and place.uri.startswith("s3://"):
        assert storage.list_pending(), "an interrupted multipart upload should be pending until pruned"

    young = run_cli("prune", place.uri, "--json", env=place.env)  # default grace: the debris may be running
    assert json.loads(young.stdout)["debrisRemoved"] == []
    pruned = run_cli("prune", place.uri, "--debris-grace", "0s", "--json", env=place.env)
    assert pruned.returncode == 0, pruned.stderr
    assert storage.list_objects() == []
    assert storage.list_pending() == []


@pytest.mark.parametrize("point", ["mid-stream", "after-commit"])
def test_an_interrupted_backup_aborts_its_upload(bulky_db: str, place: BackupPlace, point: str) -> None:
    """SIGTERM mid-stream aborts the upload; once the dump sits at its final key, it deletes it again."""
    process = start_backup(bulky_db, place, point, "--compress", "none", "--json")
    try:
        wait_for_pause(process)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:  # never leave a paused pg_dump behind: its server session would block every DROP DATABASE
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    storage = place.open()
    assert storage.list_objects() == []
    assert storage.list_pending() == []


def corrupt(place: BackupPlace, backup_id: str) -> None:
    storage = place.open().child(backup_id)
    flip_byte(storage, read_manifest(storage).dump_file)


def test_a_corrupted_dump_is_refused_by_its_checksum_and_nothing_is_restored(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    made = run_cli("backup", shop_db, "--to", place.uri, "--json", env=place.env)
    backup_id = json.loads(made.stdout)["backup"]["id"]
    corrupt(place, backup_id)
    target_name = f"r_{secrets.token_hex(4)}"
    done = run_cli("restore", pg.url(target_name), "--from", place.uri, "--create", "--json", env=place.env)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["outcome"] == "Failed"
    assert "corrupted" in report["error"]["message"] and "sha256" in report["error"]["message"]
    with psycopg.connect(pg.url()) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target_name]).fetchone()
    assert exists is None


def test_a_corrupted_dump_never_touches_an_existing_database(shop_db: str, place: BackupPlace) -> None:
    made = run_cli("backup", shop_db, "--to", place.uri, "--json", env=place.env)
    corrupt(place, json.loads(made.stdout)["backup"]["id"])
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("INSERT INTO empty_table VALUES (42)")
    done = run_cli("restore", shop_db, "--from", place.uri, "--clean", "--json", env=place.env)
    assert done.returncode == 1
    with psycopg.connect(shop_db) as conn:
        assert conn.execute("SELECT x FROM empty_table").fetchall() == [(42,)]


@pytest.mark.skipif(not (PG15_BIN / "pg_dump").exists(), reason="needs Debian's PostgreSQL 15 client tools")
def test_a_pg_dump_older_than_the_server_is_refused_naming_both_versions(
    shop_db: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    done = run_cli("backup", shop_db, "--to", fs_place.uri, "--json", env={"PGWARDEN_PG_BIN": str(PG15_BIN)})
    assert done.returncode == 2
    message = json.loads(done.stdout)["error"]["message"]
    assert "pg_dump 15." in message
    assert f"PostgreSQL {pg.install.major}." in message
    assert f"must be version {pg.install.major} or newer" in message
    assert "PGWARDEN_PG_BIN" in message
    assert not Path(fs_place.uri).exists() or list(Path(fs_place.uri).iterdir()) == []


@pytest.mark.s3
def test_a_missing_bucket_fails_the_preflight_before_any_dump(
    shop_db: str, s3: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgwarden_testing.s3server import S3Server

    assert isinstance(s3, S3Server)
    done = run_cli("backup", shop_db, "--to", "s3://no-such-bucket-here/x", "--json", env=s3.env())
    assert done.returncode == 1
    assert "no-such-bucket-here" in json.loads(done.stdout)["error"]["message"]


@pytest.mark.parametrize("outside", ["../elsewhere/dump.pgc", "/etc/hostname", "dump/../../other.pgc"])
def test_a_manifest_naming_a_file_outside_its_backup_is_refused_in_words(
    shop_db: str, fs_place: BackupPlace, outside: str
) -> None:
    """A manifest that names a dump outside its own backup folder (edited by hand, or written by a tool
    that went wrong) is refused as such, before anything is created: not an `unexpected error`."""
    made = run_cli("backup", shop_db, "--to", fs_place.uri, "--json")
    assert made.returncode == 0, made.stderr
    backup = fs_place.open().child(json.loads(made.stdout)["backup"]["id"])
    manifest = read_manifest(backup)
    write_manifest(backup, manifest.model_copy(update={"dump_file": outside}))

    restored = run_cli("restore", shop_db, "--from", backup.uri(), "--clean", "--json")
    assert restored.returncode == 2, restored.stdout + restored.stderr
    report = json.loads(restored.stdout)
    assert "unexpected" not in report["error"]["message"]
    assert outside in report["error"]["message"] and "outside" in report["error"]["message"]
