"""`restore --row-counts exact|estimate|none` (DatabaseRestore `verify.rowCounts`): each mode is honoured.

Reproduced first: the restore counted every row whatever was asked (the CLI had no such flag, the
DatabaseRestore refused estimate and none). Outside exact, only tables missing or extra (and the schema
fingerprint) are differences, and none counts nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from backup_support import SEED_ROWS, SEED_TABLES, BackupPlace, run_cli
from pgwarden_testing import localpg

from pgwarden.storage.manifest import MANIFEST


def backup_location(url: str, place: BackupPlace) -> str:
    done = run_cli("backup", url, "--to", place.uri, "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    location: str = json.loads(done.stdout)["backup"]["location"]
    return location


def edit_manifest(location: str, per_table: dict[str, int]) -> None:
    """Make the backup's manifest record other per-table rows than its dump holds."""
    path = Path(location) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["perTable"].update(per_table)
    path.write_text(json.dumps(manifest))


def restore(url: str, location: str, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("restore", url, "--from", location, "--json", *flags)
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def analyzed_tables(url: str) -> dict[str, int]:
    """How many times each table of the database was analyzed by hand (ANALYZE, not autovacuum)."""
    deadline = time.monotonic() + 10
    while True:  # statistics reach the cumulative stats a moment after the session that made them ends
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = conn.execute(
                "SELECT schemaname || '.' || relname, analyze_count FROM pg_stat_user_tables"
            ).fetchall()
        counts = {str(name): int(count) for name, count in rows}
        if all(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_estimate_analyzes_the_restored_tables_and_reports_their_estimates(
    shop_db: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    location = backup_location(shop_db, fs_place)
    edit_manifest(location, {"public.orders": 1999})  # a count only an exact restore compares

    target = pg.url(f"r_{secrets.token_hex(4)}")
    code, report = restore(target, location, "--create", "--row-counts", "estimate")
    assert code == 0, report
    assert report["outcome"] == "Succeeded"
    assert report["verification"]["matchesBackup"] is True
    assert report["verification"]["rowCounts"] == "estimate"
    assert report["tables"] == SEED_TABLES
    analyzed = analyzed_tables(target)
    assert analyzed and all(count >= 1 for count in analyzed.values()), analyzed
    # freshly analyzed small tables: the planner's estimates are the rows themselves
    assert report["rows"] == SEED_ROWS

    exact = pg.url(f"r_{secrets.token_hex(4)}")
    code, report = restore(exact, location, "--create", "--row-counts", "exact")
    assert code == 1
    assert [d["table"] for d in report["verification"]["differences"]] == ["public.orders"]
    assert report["verification"]["rowCounts"] == "exact"


def test_none_counts_no_rows_yet_finds_a_table_missing_after_the_restore(
    shop_db: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    location = backup_location(shop_db, fs_place)
    edit_manifest(location, {"public.orders": 1999})
    target = pg.url(f"r_{secrets.token_hex(4)}")
    code, report = restore(target, location, "--create", "--row-counts", "none")
    assert code == 0, report
    assert report["verification"]["matchesBackup"] is True
    assert report["tables"] == SEED_TABLES and "rows" not in report
    assert report["verification"]["rowCounts"] == "none"

    edit_manifest(location, {"public.ghost": 5})  # a table the dump does not hold
    again = pg.url(f"r_{secrets.token_hex(4)}")
    code, report = restore(again, location, "--create", "--row-counts", "none")
    assert code == 1
    assert report["outcome"] == "Failed" and "rows" not in report
    [difference] = report["verification"]["differences"]
    assert difference["table"] == "public.ghost"
    assert "actual" not in difference and "missing after the restore" in difference["detail"]


def test_none_finds_a_table_the_restore_left_in_place(shop_db: str, fs_place: BackupPlace) -> None:
    location = backup_location(shop_db, fs_place)
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE added_later (x int); INSERT INTO added_later VALUES (1)")
    code, report = restore(shop_db, location, "--clean", "--row-counts", "none")
    assert code == 1
    assert report["verification"]["matchesBackup"] is False
    assert [d["table"] for d in report["verification"]["differences"]] == ["public.added_later"]
    assert "actual" not in report["verification"]["differences"][0]


def test_a_row_count_mode_the_restore_does_not_know_is_refused(
    shop_db: str, pg: localpg.LocalPostgres, fs_place: BackupPlace
) -> None:
    location = backup_location(shop_db, fs_place)
    name = f"r_{secrets.token_hex(4)}"
    done = run_cli(
        "restore", pg.url(name), "--from", location, "--create", "--row-counts", "approx", "--json"
    )
    assert done.returncode == 2
    assert "--row-counts" in done.stderr
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None
