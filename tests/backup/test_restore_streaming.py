"""The data path (issue 12, item 4): a custom-format restore streams from storage into pg_restore with no
local copy, and the directory format is stored and fetched file by file, in parallel."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import tarfile
from pathlib import Path

import psycopg
import pytest
import zstandard
from backup_support import BackupPlace, backup, flip_byte, run_cli, start_paused, wait_for_pause
from pgwarden_testing import localpg

from pgwarden.engine.backup.streaming import ChunkReader
from pgwarden.storage import Storage
from pgwarden.storage.manifest import MANIFEST, read_manifest, write_manifest


def pg_restore_copying(server: localpg.LocalPostgres) -> list[str]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_stat_activity WHERE application_name = 'pgwarden' AND query LIKE 'COPY %'"
        ).fetchall()
    return [str(name) for (name,) in rows]


def test_a_custom_format_restore_feeds_pg_restore_while_still_reading_storage_with_no_local_copy(
    bulky_db: str, pg: localpg.LocalPostgres, place: BackupPlace, tmp_path: Path
) -> None:
    report = backup(bulky_db, place, "--compress", "none")  # ~40 MB: the pause comes after 20 MiB
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    name = f"r_{secrets.token_hex(4)}"
    process = start_paused(
        "restore",
        pg.url(name),
        "--from",
        report["backup"]["location"],
        "--create",
        "--json",
        env={**place.env, "TMPDIR": str(scratch)},
        pause_at="restore-mid-stream",
    )
    try:
        wait_for_pause(process)
        # Half the dump read from storage: pg_restore is already copying it, and nothing was put on disk.
        copying = pg_restore_copying(pg)
        assert copying and all(db.startswith(f"{name}_pgw_restoring_") for db in copying), copying
        assert list(scratch.iterdir()) == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    done = run_cli(
        "restore", pg.url(name), "--from", report["backup"]["location"], "--create", "--json", env=place.env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 400_000


@pytest.fixture
def four_tables(pg: localpg.LocalPostgres) -> str:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(4):
            conn.execute(
                f"CREATE TABLE t{n} AS SELECT g AS id, md5((g * {n + 1})::text) AS v FROM generate_series(1, 20000) g"
            )
    return url


def test_a_directory_backup_stores_each_of_pg_dumps_files_on_its_own_and_restores_them_in_parallel(
    four_tables: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    report = backup(four_tables, place, "--format", "directory", "--jobs", "2")
    backup_id = report["backup"]["id"]
    stored = place.open().child(backup_id)
    manifest = read_manifest(stored)
    assert manifest.files is not None
    names = {f.name for f in manifest.files}
    assert "toc.dat" in names and len([n for n in names if n.endswith(".dat")]) >= 5  # toc + 4 tables
    keys = {obj.key for obj in stored.list_objects()}
    assert {f.key for f in manifest.files} <= keys
    assert all(f.key.startswith("dump/") and f.key.endswith(".zst") for f in manifest.files)

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
    assert restored["rows"] == 80_000


def test_one_corrupted_table_file_of_a_directory_backup_refuses_the_restore_before_anything_is_created(
    four_tables: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    report = backup(four_tables, place, "--format", "directory", "--jobs", "2")
    stored = place.open().child(report["backup"]["id"])
    manifest = read_manifest(stored)
    assert manifest.files is not None
    victim = max(manifest.files, key=lambda f: f.size_bytes).key
    flip_byte(stored, victim)

    name = f"r_{secrets.token_hex(4)}"
    done = run_cli(
        "restore",
        pg.url(name),
        "--from",
        report["backup"]["location"],
        "--create",
        "--jobs",
        "2",
        "--json",
        env=place.env,
    )
    assert done.returncode == 1
    message = json.loads(done.stdout)["error"]["message"]
    assert "corrupted" in message and victim.rsplit("/", 1)[-1] in message
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{name}%"]).fetchall()
    assert left == []


@pytest.mark.parametrize("read_size", [1, 7, 8192, 100_000, -1])
def test_a_chunk_reader_returns_the_stream_exactly_whatever_the_read_size(read_size: int) -> None:
    chunks = [os.urandom(n) for n in (0, 1, 5000, 65536, 3, 0, 200_000)]
    reader = ChunkReader(iter(chunks))
    out = bytearray()
    while piece := reader.read(read_size):
        assert read_size < 0 or len(piece) <= read_size
        out += piece
    assert bytes(out) == b"".join(chunks)
    assert reader.read(10) == b""


def as_single_tar(stored: Storage) -> None:
    """Rewrite a directory-format backup as pgwarden stored them before per-file objects: one zstd tar."""
    manifest = read_manifest(stored)
    assert manifest.files is not None
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        for item in manifest.files:
            data = zstandard.ZstdDecompressor().decompressobj().decompress(stored.get_bytes(item.key))
            info = tarfile.TarInfo(item.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = zstandard.ZstdCompressor().compress(packed.getvalue())
    stored.delete([MANIFEST, *(item.key for item in manifest.files)])
    stored.put_bytes("dump.tar.zst", body)
    old = manifest.model_copy(
        update={
            "dump_file": "dump.tar.zst",
            "files": None,
            "size_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    )
    write_manifest(stored, old)


def test_a_directory_backup_stored_as_one_tar_by_an_older_pgwarden_still_restores(
    four_tables: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    report = backup(four_tables, fs_place, "--format", "directory", "--jobs", "2")
    as_single_tar(fs_place.open().child(report["backup"]["id"]))
    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli("restore", target, "--from", fs_place.uri, "--create", "--jobs", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 80_000
