"""The command-line contract for backup, restore, backups and prune: exit codes, JSON fields, no secrets."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from backup_support import BackupPlace, run_cli, seed
from pgwarden_testing import localpg

from pgwarden.engine.postgres.tools import tool_invocation


@pytest.fixture
def canary_url(pg: localpg.LocalPostgres) -> str:
    """A seeded database reached as a role whose password is a canary that must never be printed."""
    password = f"Canary-{secrets.token_hex(6)}!pw"
    role = f"canary_{secrets.token_hex(3)}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    dbname = pg.create_database()
    url = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{pg.port}/{dbname.rsplit('/', 1)[1]}"
    seed(url)
    return url


def password_of(url: str) -> str:
    from psycopg import conninfo

    return str(conninfo.conninfo_to_dict(url)["password"])


def test_the_canary_password_and_the_s3_secret_never_appear_in_any_output(
    canary_url: str, pg: localpg.LocalPostgres, place: BackupPlace, tmp_path: Path
) -> None:
    canary = password_of(canary_url)
    secrets_to_hide = [canary, quote(canary, safe=""), *[v for k, v in place.env.items() if "SECRET" in k]]
    target = canary_url.rsplit("/", 1)[0] + f"/r_{secrets.token_hex(4)}"
    wrong_password = canary_url.replace(quote(canary, safe=""), "wrong" + quote(canary, safe=""))
    runs = [
        run_cli("backup", canary_url, "--to", place.uri, "--verify", "--json", env=place.env),
        run_cli("-v", "backup", canary_url, "--to", place.uri, env=place.env),
        run_cli("backups", place.uri, "--json", env=place.env),
        run_cli("backups", place.uri, env=place.env),
        run_cli("-v", "restore", target, "--from", place.uri, "--create", "--json", env=place.env),
        run_cli("restore", target, "--from", place.uri, env=place.env),  # refused: not empty
        run_cli("restore", wrong_password, "--from", place.uri, "--json", env=place.env),
        run_cli(
            "backup", canary_url, "--to", place.uri, env={**place.env, "PGWARDEN_PG_BIN": "/nonexistent"}
        ),
        run_cli("backup", canary_url, "--to", "gs://bucket/x", "--json"),
        run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env),
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[4].returncode == 0, runs[4].stderr
    assert runs[6].returncode == 1
    for done in runs:
        for secret in secrets_to_hide:
            assert secret not in done.stdout and secret not in done.stderr, done.args
    manifests = place.open().list_objects()
    for obj in manifests:
        if obj.key.endswith("manifest.json"):
            assert canary not in place.open().get_bytes(obj.key).decode()


def test_tools_get_the_password_through_the_environment_not_the_command_line() -> None:
    args, env = tool_invocation("postgresql://u:s3cr3t-pw@db.example:5432/shop?sslmode=require")
    assert all("s3cr3t-pw" not in arg for arg in args)
    assert env["PGPASSWORD"] == "s3cr3t-pw"
    assert "dbname=shop" in args[0] and "sslmode=require" in args[0]


@pytest.mark.parametrize(
    "args",
    [
        ("--compress", "brotli"),
        ("--compress", "zstd:99"),
        ("--jobs", "2"),
        ("--format", "directory", "--jobs", "0"),
    ],
)
def test_bad_backup_flags_exit_2_with_a_json_error(
    shop_db: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = run_cli("backup", shop_db, "--to", str(tmp_path / "b"), "--json", *args)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["outcome"] == "Failed" and report["error"]["message"]
    assert not (tmp_path / "b").exists()


def test_an_unsupported_location_exits_2(shop_db: str) -> None:
    done = run_cli("backup", shop_db, "--to", "gs://bucket/prefix", "--json")
    assert done.returncode == 2
    assert "s3://bucket/prefix" in json.loads(done.stdout)["error"]["message"]


def test_restoring_from_a_location_without_backups_exits_2(shop_db: str, tmp_path: Path) -> None:
    done = run_cli("restore", shop_db, "--from", str(tmp_path), "--json")
    assert done.returncode == 2
    assert "no complete backup" in json.loads(done.stdout)["error"]["message"]


def test_prune_refuses_a_bad_age(tmp_path: Path) -> None:
    done = run_cli("prune", str(tmp_path), "--max-age", "7", "--json")
    assert done.returncode == 2
    assert "7d" in json.loads(done.stdout)["error"]["message"]


def test_backups_of_an_empty_location_lists_none(tmp_path: Path) -> None:
    done = run_cli("backups", str(tmp_path), "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {
        "outcome": "Succeeded",
        "location": str(tmp_path),
        "count": 0,
        "owners": [],
        "backups": [],
        "incomplete": 0,
        "unreadable": [],
        "folders": {},
    }


def test_human_output_goes_to_stdout_and_progress_to_stderr(shop_db: str, tmp_path: Path) -> None:
    done = run_cli("backup", shop_db, "--to", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout and "sha256" in done.stdout
    assert "backing up" in done.stderr
    json_run = run_cli("backup", shop_db, "--to", str(tmp_path), "--json")
    assert len(json_run.stdout.strip().splitlines()) == 1


def test_restoring_into_a_missing_database_without_create_exits_2(
    shop_db: str, pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    run_cli("backup", shop_db, "--to", str(tmp_path))
    done = run_cli("restore", pg.url("no_such_db"), "--from", str(tmp_path), "--json")
    assert done.returncode == 2
    assert "--create" in json.loads(done.stdout)["error"]["message"]
