"""Backup test support: seeded databases, places to back up to (a directory and a MinIO bucket), the CLI runner.

A module of its own (not conftest) so tests import it by a unique name; conftest.py re-exports its fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgwarden_testing import localpg, s3server

from pgwarden.storage import Storage
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.location import S3Location, s3_client
from pgwarden.storage.s3 import S3Storage

SEED = """
CREATE TABLE customers (
    id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, created_at timestamptz DEFAULT now(),
    meta jsonb, photo bytea, balance numeric(12, 2), tags text[]
);
INSERT INTO customers (name, email, meta, photo, balance, tags)
SELECT 'Kund ' || g || ' — Zoë ☃', CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
       jsonb_build_object('n', g, 'vip', g % 10 = 0), decode(md5(g::text), 'hex'), g * 1.25,
       ARRAY['t' || (g % 3), 'x']
FROM generate_series(1, 500) g;
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id bigint REFERENCES customers, total numeric, placed_on date
);
INSERT INTO orders (customer_id, total, placed_on)
SELECT 1 + g % 500, g / 3.0, date '2024-01-01' + g % 365 FROM generate_series(1, 2000) g;
CREATE SCHEMA "Sales Ops";
CREATE TABLE "Sales Ops"."Quarterly Targets" ("Region" text PRIMARY KEY, target int);
INSERT INTO "Sales Ops"."Quarterly Targets" VALUES ('North', 10), ('South', 20), ('Ünter', NULL);
CREATE TABLE events (id int, at date NOT NULL, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT g, date '2024-06-01' + g % 400, repeat('p', g % 50) FROM generate_series(1, 800) g;
CREATE TABLE empty_table (x int);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orders $$;
SELECT setval('orders_id_seq', 5000);
"""
SEED_TABLES = 5
SEED_ROWS = 500 + 2000 + 3 + 800


@dataclass
class BackupPlace:
    """Where a test's backups go: the URI the CLI takes, the environment it needs, a Storage to look."""

    uri: str
    env: dict[str, str] = field(default_factory=dict)
    storage: Storage | None = None

    def open(self) -> Storage:
        assert self.storage is not None
        return self.storage


def s3_place(
    server: s3server.S3Server, monkeypatch: pytest.MonkeyPatch, prefix: str = "nightly"
) -> BackupPlace:
    bucket = server.create_bucket()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    location = S3Location(bucket=bucket, prefix=prefix, endpoint=server.endpoint, region="us-east-1")
    storage = S3Storage(s3_client(location), bucket, prefix)
    return BackupPlace(f"s3://{bucket}/{prefix}", server.env(), storage)


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BackupPlace:
    """An empty backup location on each backend in turn (the S3 one with AWS_* set for this test)."""
    if request.param == "filesystem":
        root = tmp_path / "backups"
        return BackupPlace(str(root), {}, FilesystemStorage(root))
    return s3_place(request.getfixturevalue("s3"), monkeypatch)


@pytest.fixture
def fs_place(tmp_path: Path) -> BackupPlace:
    root = tmp_path / "backups"
    return BackupPlace(str(root), {}, FilesystemStorage(root))


def seed(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED)
    return url


@pytest.fixture
def shop_db(pg: localpg.LocalPostgres) -> str:
    """A fresh database with varied data: types, odd names, a partitioned table, a view, a sequence."""
    return seed(pg.create_database())


@pytest.fixture(scope="module")
def bulky_db(pg: localpg.LocalPostgres) -> str:
    """About 40 MB of dump: several S3 parts when stored uncompressed (the mid-stream pause is at 20 MiB)."""
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a, "
            "md5((g * 13)::text) AS b FROM generate_series(1, 400000) g"
        )
    return url


PGWARDEN = [sys.executable, "-c", "from pgwarden.cli import entrypoint; entrypoint()"]
# The command line with its pause points live (the test harness's wrapper, pgwarden_testing.paused).
PAUSED_PGWARDEN = [sys.executable, "-m", "pgwarden_testing.paused"]
PAUSE_ENV = "PGWARDEN_TEST_PAUSE_AT"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run `pgwarden ARGS` as a separate process, the way users and Jobs do."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_TEST")}
    full_env.update(env or {})
    return subprocess.run(
        [*PGWARDEN, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def backup(url: str, place: BackupPlace, *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`pgwarden backup URL --to PLACE --json FLAGS`, which must succeed: its report."""
    done = run_cli("backup", url, "--to", place.uri, "--json", *flags, env=env or place.env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def start_paused(*args: str, env: dict[str, str], pause_at: str) -> subprocess.Popen[str]:
    """Start `pgwarden ARGS` without waiting; it stops at the test pause point `pause_at` (see wait_for_pause)."""
    return subprocess.Popen(
        [*PAUSED_PGWARDEN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, PAUSE_ENV: pause_at},
    )


def wait_for_pause(process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Read the process's stderr until it says it reached its pause point; fail if it ends or never does."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "pgwarden-test: paused at" in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"pgwarden ended (exit {process.returncode}) before its pause point")
    raise AssertionError("pgwarden never reached its pause point")


def flip_byte(storage: Storage, key: str, at: int | None = None, bits: int = 0xFF) -> None:
    """Change one byte of a stored object in place (the middle one unless `at` says): a corrupted upload."""
    data = bytearray(storage.get_bytes(key))
    data[len(data) // 2 if at is None else at] ^= bits
    storage.delete([key])
    storage.put_bytes(key, bytes(data))


def all_rows(url: str) -> dict[str, list[str]]:
    """Every row of every user table, as text, sorted: equal dicts mean equal data row for row."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        return {
            name: [row[0] for row in conn.execute(f"SELECT t::text FROM {name} t ORDER BY 1").fetchall()]
            for (name,) in tables
        }


def sequences(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences"
        ).fetchall()
    return {str(name): int(value or 0) for name, value in rows}
