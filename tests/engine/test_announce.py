"""Migrations never queue behind pgwarden's own dumps: a backup announces itself (a shared advisory lock in the
maintenance database, its session named "pgwarden backup <id>") and a migration waits for it, bounded, before
it takes any lock, saying what it waits for in its progress lines and its report."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.engine.postgres.announce import (
    announce_key,
    announced,
    announcements,
    lock_ids,
    maintenance_url,
)

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
PAUSED_PGWARDEN = [sys.executable, "-m", "pgwarden_testing.paused"]
PAUSED = "pgwarden-test: paused at "


def test_a_key_reads_in_pg_locks_as_its_two_unsigned_halves() -> None:
    assert lock_ids(-1) == (0xFFFF_FFFF, 0xFFFF_FFFF)
    assert lock_ids(0x0000_0001_0000_0002) == (1, 2)
    assert announce_key("shop") != announce_key("shop2")


def seeded(pg: LocalPostgres) -> str:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
        conn.execute("INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 500) g")
    return url


def rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, total FROM orders ORDER BY id").fetchall()


class Lines:
    """A process's stderr, read line by line as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")))
        self._thread.start()

    def wait_for(self, text: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if text in line]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not said within {seconds}s: {self.lines}")

    def join(self) -> None:
        self._thread.join(timeout=30)


def test_a_migration_started_during_a_backup_waits_for_it_then_succeeds_and_the_backup_is_intact(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = seeded(pg)
    before = rows(url)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "0001_note.sql").write_text("ALTER TABLE orders ADD COLUMN note text;\n")
    backup = subprocess.Popen(
        [*PAUSED_PGWARDEN, "backup", url, "--to", str(tmp_path / "backups"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "PGWARDEN_TEST_PAUSE_AT": "before-commit", "PGWARDEN_TEST_PAUSE_SECONDS": "6"},
    )
    backup_said = Lines(backup)
    backup_said.wait_for(PAUSED + "before-commit", 60)  # dumped, not yet committed: announced still

    migration = subprocess.Popen(
        [PGWARDEN, "migrate", url, "--dir", str(migrations), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    migration_said = Lines(migration)
    waiting = migration_said.wait_for("waiting for backup ", 30)
    with psycopg.connect(url) as conn:  # waiting, it has taken no lock on the table and changed nothing
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND pid <> pg_backend_pid()"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'"
        ).fetchone() == (0,)
    backup_out, _ = backup.communicate(timeout=120)
    migration_out, _ = migration.communicate(timeout=120)
    backup_said.join()
    migration_said.join()

    backed_up = json.loads(backup_out)
    migrated = json.loads(migration_out)
    assert backed_up["outcome"] == "Succeeded", backed_up
    backup_id = backed_up["backup"]["id"]
    assert f"waiting for backup {backup_id}, running " in waiting
    assert migrated["outcome"] == "Succeeded", migrated
    assert migrated["waitedFor"]["runs"] == [f"backup {backup_id}"]
    assert migrated["waitedFor"]["seconds"] > 1
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'"
        ).fetchone() == (1,)
    copy = pg.url(f"restored_{secrets.token_hex(4)}")
    restored = subprocess.run(
        [PGWARDEN, "restore", copy, "--from", backed_up["backup"]["location"], "--create", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert json.loads(restored.stdout)["outcome"] == "Succeeded", restored.stdout + restored.stderr
    assert rows(copy) == before
    assert pg.password not in backup_out + migration_out + "".join(migration_said.lines)


def test_a_migration_gives_up_waiting_at_its_bound_without_changing_anything(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = seeded(pg)
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "0001_note.sql").write_text("ALTER TABLE orders ADD COLUMN note text;\n")

    with announced(url, "backup 20261207T013000Z-test") as held:
        assert held
        with psycopg.connect(maintenance_url(url)) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgwarden backup 20261207T013000Z-test'"
            ).fetchone() == (1,)
        migration = subprocess.run(
            [PGWARDEN, "migrate", url, "--dir", str(migrations), "--json", "--backup-wait", "2s"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )

    report = json.loads(migration.stdout)
    assert migration.returncode == 1
    assert report["outcome"] == "RolledBack"
    assert "backup 20261207T013000Z-test" in report["error"]["message"]
    assert "did not start" in report["error"]["message"]
    assert "waiting for backup 20261207T013000Z-test, running " in migration.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'"
        ).fetchone() == (0,)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}


def test_a_restore_announces_itself_on_the_database_it_restores_for_its_whole_run(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = seeded(pg)
    taken = subprocess.run(
        [PGWARDEN, "backup", url, "--to", str(tmp_path / "backups"), "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    backup = json.loads(taken.stdout)["backup"]
    name = f"restored_{secrets.token_hex(4)}"
    restore = subprocess.Popen(
        [*PAUSED_PGWARDEN, "restore", pg.url(name), "--from", backup["location"], "--create", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "PGWARDEN_TEST_PAUSE_AT": "restore-created", "PGWARDEN_TEST_PAUSE_SECONDS": "3"},
    )
    said = Lines(restore)
    said.wait_for(PAUSED + "restore-created", 60)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        running = announcements(conn, name)
    out, _ = restore.communicate(timeout=120)
    said.join()

    assert [a.what for a in running] == [f"restore {backup['id']}"]
    assert json.loads(out)["outcome"] == "Succeeded"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        assert announcements(conn, name) == []  # let go with the restore's end
