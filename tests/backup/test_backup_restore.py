"""Backup then restore gives back every row, on a path and on S3, through the command line (DESIGN.md 4)."""

from __future__ import annotations

import json
import secrets

import psycopg
import pytest
from backup_support import SEED_ROWS, SEED_TABLES, BackupPlace, all_rows, backup, run_cli, sequences
from pgwarden_testing import localpg

from pgwarden.storage.manifest import list_backups, read_manifest


@pytest.mark.parametrize(
    "flags",
    [(), ("--compress", "lz4"), ("--format", "directory", "--jobs", "2", "--compress", "gzip:1")],
    ids=["custom-zstd", "custom-lz4", "directory-gzip"],
)
def test_backup_then_restore_into_a_new_database_gives_back_every_row(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, flags: tuple[str, ...]
) -> None:
    report = backup(shop_db, place, *flags)
    assert report["outcome"] == "Succeeded"
    info = report["backup"]
    assert isinstance(info, dict)
    assert set(info) >= {"id", "location", "sizeBytes", "sha256"}
    assert str(info["location"]).startswith(place.uri)
    assert (report["tables"], report["rows"]) == (SEED_TABLES, SEED_ROWS)

    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli("restore", target, "--from", str(info["location"]), "--create", "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["outcome"] == "Succeeded"
    assert restored["verification"]["matchesBackup"] is True
    assert restored["verification"]["differences"] == []
    assert restored["backup"]["sha256"] == info["sha256"]
    assert all_rows(target) == all_rows(shop_db)
    assert sequences(target) == sequences(shop_db)


def test_the_manifest_describes_the_backup(shop_db: str, place: BackupPlace) -> None:
    report = backup(shop_db, place)
    info = report["backup"]
    assert isinstance(info, dict)
    manifest = read_manifest(place.open().child(str(info["id"])))
    assert manifest.sha256 == info["sha256"] and manifest.size_bytes == info["sizeBytes"]
    assert manifest.format == "custom" and manifest.compression == "zstd:3"
    assert manifest.server_version.split(".")[0] == manifest.pg_dump_version.split(".")[0]
    assert manifest.per_table["public.orders"] == 2000
    assert manifest.per_table['"Sales Ops"."Quarterly Targets"'] == 3
    assert manifest.per_table["public.events"] == 800
    assert manifest.schema_fingerprint and len(manifest.schema_fingerprint) == 64
    assert manifest.started_at <= manifest.completed_at
    assert manifest.verified is False


def test_backups_lists_complete_backups_newest_first(shop_db: str, place: BackupPlace) -> None:
    first = backup(shop_db, place)["backup"]
    second = backup(shop_db, place)["backup"]
    done = run_cli("backups", place.uri, "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["count"] == 2
    assert [b["id"] for b in listing["backups"]] == [second["id"], first["id"]]
    human = run_cli("backups", place.uri, env=place.env)
    assert second["id"] in human.stdout


def test_restore_from_a_prefix_takes_the_newest_backup(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    backup(shop_db, place)
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id > 1000")
    newest = backup(shop_db, place)["backup"]
    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli("restore", target, "--from", place.uri, "--create", "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backup"]["id"] == newest["id"]
    assert all_rows(target) == all_rows(shop_db)


def test_verified_backup_is_restored_into_a_scratch_database_that_is_dropped(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    report = backup(shop_db, place, "--verify")
    assert report["verification"] == {
        "matchesBackup": True,
        "schemaMatches": True,
        "tablesCompared": SEED_TABLES,
        "rowCounts": "exact",
        "differences": [],
        "differencesTotal": 0,
    }
    assert report["backup"]["verified"] is True
    assert list_backups(place.open())[0].verified is True
    with psycopg.connect(pg.url()) as conn:
        scratch = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgwarden_verify%'"
        ).fetchall()
    assert scratch == []


def test_restore_refuses_a_database_that_has_tables_unless_clean(
    shop_db: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    backup(shop_db, fs_place)
    original = all_rows(shop_db)
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("UPDATE customers SET name = 'changed'; DELETE FROM events")

    refused = run_cli("restore", shop_db, "--from", fs_place.uri, "--json")
    assert refused.returncode == 2
    assert "--clean" in json.loads(refused.stdout)["error"]["message"]

    done = run_cli("restore", shop_db, "--from", fs_place.uri, "--clean", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verification"]["matchesBackup"] is True
    assert all_rows(shop_db) == original


def test_restore_with_create_refuses_an_existing_database(shop_db: str, fs_place: BackupPlace) -> None:
    backup(shop_db, fs_place)
    refused = run_cli("restore", shop_db, "--from", fs_place.uri, "--create", "--json")
    assert refused.returncode == 2
    assert "already exists" in json.loads(refused.stdout)["error"]["message"]


def test_terminate_connections_ends_other_sessions_before_restoring(
    shop_db: str, fs_place: BackupPlace
) -> None:
    backup(shop_db, fs_place)
    with psycopg.connect(shop_db) as other:
        other.execute("SELECT count(*) FROM orders")  # holds a lock inside an open transaction
        done = run_cli(
            "restore", shop_db, "--from", fs_place.uri, "--clean", "--terminate-connections", "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["terminatedConnections"] >= 1
        with pytest.raises(psycopg.OperationalError):
            other.execute("SELECT 1")


def test_a_restore_that_leaves_extra_tables_reports_them_and_fails(
    shop_db: str, fs_place: BackupPlace
) -> None:
    backup(shop_db, fs_place)
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE added_later (x int); INSERT INTO added_later VALUES (1)")
    done = run_cli("restore", shop_db, "--from", fs_place.uri, "--clean", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["outcome"] == "Failed"
    assert report["verification"]["matchesBackup"] is False
    assert report["verification"]["differences"][0]["table"] == "public.added_later"


def test_the_oldest_server_is_backed_up_with_its_own_pg_dump(
    pg_oldest: localpg.LocalPostgres, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    from backup_support import seed

    source = seed(pg_oldest.create_database())
    report = backup(source, fs_place)
    assert str(report["pgDumpVersion"]).split(".")[0] == str(pg_oldest.install.major)
    target = pg_oldest.url(f"r_{secrets.token_hex(4)}")
    done = run_cli("restore", target, "--from", fs_place.uri, "--create", "--json")
    assert done.returncode == 0, done.stderr
    assert all_rows(target) == all_rows(source)


def test_a_larger_database_restores_count_for_count_with_parallel_jobs(
    bulky_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    report = backup(bulky_db, place, "--format", "directory", "--jobs", "2", "--compress", "zstd:1")
    assert report["rows"] == 400_000
    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli(
        "restore",
        target,
        "--from",
        report["backup"]["location"],
        "--create",
        "--jobs",
        "2",
        "--json",
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["verification"]["matchesBackup"] is True
    assert restored["rows"] == 400_000
