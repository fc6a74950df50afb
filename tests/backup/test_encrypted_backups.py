"""Client-side encryption with age (issue 12, item 2): what is stored is sealed to recipients' public keys,
restores with one of their identities, and is refused without one (exit 2) before anything changes."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import SEED_ROWS, BackupPlace, all_rows, flip_byte, run_cli
from pgwarden_testing import localpg
from pyrage import x25519

from pgwarden.storage.manifest import read_manifest


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path, Path]:
    """An age recipient, its identity file (as age-keygen writes it), and an unrelated identity file."""
    ours, theirs = x25519.Identity.generate(), x25519.Identity.generate()
    identity = tmp_path / "key.txt"
    identity.write_text(f"# created: for a test\n# public key: {ours.to_public()}\n{ours}\n")
    stranger = tmp_path / "other.txt"
    stranger.write_text(f"{theirs}\n")
    return str(ours.to_public()), identity, stranger


def sealed_backup(url: str, place: BackupPlace, recipient: str, *flags: str) -> dict[str, Any]:
    done = run_cli(
        "backup", url, "--to", place.uri, "--encrypt-to", recipient, "--json", *flags, env=place.env
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def database_names(pg: localpg.LocalPostgres, like: str) -> list[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [like]).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("flags", [(), ("--format", "directory", "--jobs", "2")], ids=["custom", "directory"])
def test_a_sealed_backup_restores_with_its_identity_row_for_row(
    shop_db: str,
    pg: localpg.LocalPostgres,
    place: BackupPlace,
    keys: tuple[str, Path, Path],
    flags: tuple[str, ...],
) -> None:
    recipient, identity, _ = keys
    report = sealed_backup(shop_db, place, recipient, *flags)
    assert report["encryption"] == {"method": "age", "recipients": [recipient]}
    manifest = read_manifest(place.open().child(report["backup"]["id"]))
    assert manifest.encryption is not None and manifest.encryption.recipients == [recipient]
    listed = run_cli("backups", place.uri, "--json", env=place.env)
    [summary] = json.loads(listed.stdout)["backups"]
    assert summary["encryption"] == {"method": "age", "recipients": [recipient]}
    assert "+age" in run_cli("backups", place.uri, env=place.env).stdout

    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli(
        "restore",
        target,
        "--from",
        place.uri,
        "--create",
        "--identity",
        identity,
        "--json",
        *flags[2:],
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == SEED_ROWS
    assert all_rows(target) == all_rows(shop_db)


def test_the_stored_object_is_age_ciphertext_not_a_readable_dump(
    shop_db: str, place: BackupPlace, keys: tuple[str, Path, Path]
) -> None:
    report = sealed_backup(shop_db, place, keys[0], "--compress", "none")  # no compression to hide behind
    stored = place.open().child(report["backup"]["id"])
    manifest = read_manifest(stored)
    data = stored.get_bytes(manifest.dump_file)
    assert data.startswith(b"age-encryption.org/v1\n")
    assert b"PGDMP" not in data  # a custom-format archive's magic
    for plain in (b"customers", b"example.com", b"Quarterly Targets", b"CREATE TABLE"):
        assert plain not in data
    assert hashlib.sha256(data).hexdigest() == manifest.sha256 == report["backup"]["sha256"]
    assert len(data) == manifest.size_bytes


@pytest.mark.parametrize("which", ["no identity", "another identity"])
def test_a_sealed_backup_without_its_identity_is_refused_with_exit_2_and_nothing_is_created_or_changed(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, keys: tuple[str, Path, Path], which: str
) -> None:
    recipient, _, stranger = keys
    sealed_backup(shop_db, place, recipient)
    extra = [] if which == "no identity" else ["--identity", str(stranger)]

    name = f"r_{secrets.token_hex(4)}"
    created = run_cli(
        "restore", pg.url(name), "--from", place.uri, "--create", "--json", *extra, env=place.env
    )
    assert created.returncode == 2, created.stderr
    message = json.loads(created.stdout)["error"]["message"]
    assert "--identity" in message or "identity" in message
    assert "nothing was restored" in message.lower()
    assert database_names(pg, f"{name}%") == []

    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("INSERT INTO empty_table VALUES (7)")
        before = conn.execute("SELECT count(*) FROM customers").fetchone()
    into = run_cli(
        "restore",
        shop_db,
        "--from",
        place.uri,
        "--clean",
        "--terminate-connections",
        "--json",
        *extra,
        env=place.env,
    )
    assert into.returncode == 2
    assert all_rows(shop_db)["public.empty_table"] == ["(7)"]
    with psycopg.connect(shop_db) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == before


def test_a_changed_byte_in_a_sealed_dump_is_found_and_nothing_is_restored(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, keys: tuple[str, Path, Path]
) -> None:
    recipient, identity, _ = keys
    report = sealed_backup(shop_db, place, recipient)
    stored = place.open().child(report["backup"]["id"])
    # inside the payload, past the header the identity check reads
    flip_byte(stored, read_manifest(stored).dump_file, at=-100, bits=0x01)

    name = f"r_{secrets.token_hex(4)}"
    done = run_cli(
        "restore",
        pg.url(name),
        "--from",
        place.uri,
        "--create",
        "--identity",
        identity,
        "--json",
        env=place.env,
    )
    assert done.returncode == 1
    assert "corrupted" in json.loads(done.stdout)["error"]["message"]
    assert database_names(pg, f"{name}%") == []


def test_verify_of_a_sealed_backup_needs_the_identity_and_works_with_it(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, keys: tuple[str, Path, Path]
) -> None:
    recipient, identity, _ = keys
    refused = run_cli(
        "backup", shop_db, "--to", place.uri, "--encrypt-to", recipient, "--verify", "--json", env=place.env
    )
    assert refused.returncode == 2
    assert "--identity" in json.loads(refused.stdout)["error"]["message"]
    assert place.open().list_objects() == []

    done = sealed_backup(shop_db, place, recipient, "--verify", "--identity", str(identity))
    assert done["backup"]["verified"] is True
    assert done["verification"]["matchesBackup"] is True
    assert database_names(pg, "pgwarden_verify_%") == []


def test_a_recipient_that_is_not_an_age_key_is_refused_before_anything_is_stored(
    shop_db: str, place: BackupPlace, keys: tuple[str, Path, Path]
) -> None:
    done = run_cli(
        "backup", shop_db, "--to", place.uri, "--encrypt-to", "ssh-nonsense", "--json", env=place.env
    )
    assert done.returncode == 2
    assert "age1" in json.loads(done.stdout)["error"]["message"]
    assert place.open().list_objects() == []


def test_the_identity_never_appears_in_any_output(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace, keys: tuple[str, Path, Path]
) -> None:
    recipient, identity, stranger = keys
    secret_keys = [
        line
        for path in (identity, stranger)
        for line in path.read_text().splitlines()
        if line.startswith("AGE-SECRET-KEY")
    ]
    runs = [
        run_cli(
            "-v",
            "backup",
            shop_db,
            "--to",
            place.uri,
            "--encrypt-to",
            recipient,
            "--verify",
            "--identity",
            str(identity),
            "--json",
            env=place.env,
        ),
        run_cli(
            "-v",
            "restore",
            pg.url(f"r_{secrets.token_hex(4)}"),
            "--from",
            place.uri,
            "--create",
            "--identity",
            str(stranger),
            env=place.env,
        ),
        run_cli(
            "-v",
            "restore",
            pg.url(f"r_{secrets.token_hex(4)}"),
            "--from",
            place.uri,
            "--create",
            "--identity",
            str(identity),
            env=place.env,
        ),
    ]
    assert [r.returncode for r in runs] == [0, 2, 0], [r.stderr for r in runs]
    for done in runs:
        for key in secret_keys:
            assert key not in done.stdout and key not in done.stderr
    for obj in place.open().list_objects():
        if obj.key.endswith("manifest.json"):
            text = place.open().get_bytes(obj.key).decode()
            assert recipient in text and not any(key in text for key in secret_keys)
