"""`pgwarden migrate --rehearse-from LOCATION` (issue 13, DESIGN.md 4): the same plan and verification first run
on a scratch copy restored from a real backup. A failed rehearsal (a statement that works on an empty database
but not on the data, or a lock that blocks writes held too long) stops the run with exit 1 and the real
database untouched; a good one lets the real run go and the report has both. No scratch database is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from helpers import execute, history, json_report, migrations_dir, query, run_pgwarden, table_counts
from pgwarden_testing.localpg import LocalPostgres
from psycopg.conninfo import conninfo_to_dict
from pyrage import x25519

ROWS = 1000
# Every tenth order has no note: fine for the schema, fatal for a NOT NULL added later.
BASE = {
    "0001_orders.sql": "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL, note text);\n"
    f"INSERT INTO orders SELECT g, g * 1.5, CASE WHEN g % 10 = 0 THEN NULL ELSE 'n' END "
    f"FROM generate_series(1, {ROWS}) g;\n"
}


def scratch_databases(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%\\_pgw\\_rehearsal\\_%'")
        return [str(r[0]) for r in rows.fetchall()]


def backed_up(db_url: str, tmp_path: Path) -> tuple[Path, Path]:
    """The database at 0001 with its rows, a real backup of it, and the migration directory."""
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    first = run_pgwarden("migrate", db_url, "--dir", directory, "--json")
    assert first.returncode == 0, first.stderr
    backups = tmp_path / "backups"
    backup = run_pgwarden("backup", db_url, "--to", backups, "--json")
    assert backup.returncode == 0, backup.stderr
    return directory, backups


def rehearse(db_url: str, directory: Path, backups: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """`migrate --rehearse-from --json`: exit code, report and stderr, none of which holds the password."""
    result = run_pgwarden("migrate", db_url, "--dir", directory, "--rehearse-from", backups, *args, "--json")
    password = str(conninfo_to_dict(db_url)["password"])
    assert password not in result.stdout + result.stderr
    return result.returncode, json_report(result), result.stderr


def state(url: str) -> tuple[object, ...]:
    """What a run could change: history, counts, and the columns of orders with their nullability."""
    columns = query(
        url,
        "SELECT string_agg(column_name || ':' || is_nullable, ',' ORDER BY column_name) "
        "FROM information_schema.columns WHERE table_name = 'orders'",
    )
    return history(url), table_counts(url), columns


def test_a_statement_that_passes_on_an_empty_database_but_not_on_the_data_stops_the_run(
    pg: LocalPostgres, db_url: str, tmp_path: Path
) -> None:
    directory, backups = backed_up(db_url, tmp_path)
    (directory / "0002_note_required.sql").write_text("ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n")
    empty = pg.create_database()  # the same schema without the rows: there the statement works
    execute(empty, "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL, note text)")
    execute(empty, "ALTER TABLE orders ALTER COLUMN note SET NOT NULL")
    before = state(db_url)

    code, report, stderr = rehearse(db_url, directory, backups)

    assert code == 1, stderr
    assert report["rehearsal"]["outcome"] == "Failed"
    assert "0002_note_required.sql" in report["rehearsal"]["error"]["message"]
    assert "did not start" in report["error"]["message"]
    assert report["outcome"] == "RolledBack" and report.get("applied", []) == []
    assert report["pending"] == ["0002"]
    assert state(db_url) == before
    assert scratch_databases(db_url) == []


def test_a_lock_that_blocks_writes_held_beyond_the_limit_fails_the_rehearsal(
    db_url: str, tmp_path: Path
) -> None:
    directory, backups = backed_up(db_url, tmp_path)
    # ADD COLUMN takes ACCESS EXCLUSIVE on orders and keeps it until COMMIT, past the slow statement after it.
    (directory / "0002_flag.sql").write_text("ALTER TABLE orders ADD COLUMN flag int;\nSELECT pg_sleep(2);\n")
    before = state(db_url)

    code, report, stderr = rehearse(db_url, directory, backups, "--rehearsal-max-lock-hold", "1s")

    assert code == 1, f"{stderr}\n{report}"
    rehearsal = report["rehearsal"]
    assert rehearsal["outcome"] == "Failed"
    held = [
        lock
        for lock in rehearsal["locks"]
        if lock["mode"] == "AccessExclusiveLock" and lock["relation"] == "orders"
    ]
    assert held and held[0]["heldSeconds"] > 1.5, rehearsal["locks"]
    assert held[0]["statement"] == "0002_flag.sql:1" and held[0]["blocksWrites"] is True
    assert "AccessExclusiveLock on orders" in rehearsal["error"]["message"]
    assert state(db_url) == before
    assert scratch_databases(db_url) == []


def test_a_good_rehearsal_lets_the_real_run_go_and_the_report_has_both(db_url: str, tmp_path: Path) -> None:
    directory, backups = backed_up(db_url, tmp_path)
    (directory / "0002_flag.sql").write_text(
        "ALTER TABLE orders ADD COLUMN flag int;\nINSERT INTO orders SELECT g, 1 FROM generate_series(1001, 1010) g;\n"
    )

    code, report, stderr = rehearse(db_url, directory, backups, "--rehearsal-max-lock-hold", "30s")

    assert code == 0, stderr
    rehearsal = report["rehearsal"]
    assert rehearsal["outcome"] == "Succeeded"
    assert [a["version"] for a in rehearsal["applied"]] == ["0002"]
    assert rehearsal["rowChanges"] == [{"table": "public.orders", "before": ROWS, "after": ROWS + 10}]
    assert any(k["mode"] == "AccessExclusiveLock" and k["relation"] == "orders" for k in rehearsal["locks"])
    assert rehearsal["restoreSeconds"] > 0 and rehearsal["runSeconds"] > 0
    assert [a["version"] for a in report["applied"]] == ["0002"]
    assert report["outcome"] == "Succeeded"
    assert ("0002", "SQL", True) in history(db_url)
    assert table_counts(db_url)["public.orders"] == ROWS + 10
    assert scratch_databases(db_url) == []


def test_a_prefix_is_rehearsed_on_its_newest_verified_backup_else_on_its_newest_with_a_warning(
    db_url: str, tmp_path: Path
) -> None:
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    assert run_pgwarden("migrate", db_url, "--dir", directory).returncode == 0
    drilled, fresh = tmp_path / "drilled", tmp_path / "fresh"
    verified = json_report(run_pgwarden("backup", db_url, "--to", drilled, "--verify", "--json"))["backup"]
    newer = json_report(run_pgwarden("backup", db_url, "--to", drilled, "--json"))["backup"]  # not verified
    assert verified["verified"] and not newer["verified"]
    (directory / "0002_flag.sql").write_text("ALTER TABLE orders ADD COLUMN flag int;\n")

    code, report, stderr = rehearse(db_url, directory, drilled)

    assert code == 0, stderr
    assert report["rehearsal"]["backup"].endswith(verified["id"]), report["rehearsal"]["backup"]
    assert report["rehearsal"].get("warnings", []) == []

    only = json_report(run_pgwarden("backup", db_url, "--to", fresh, "--json"))["backup"]
    (directory / "0003_mark.sql").write_text("ALTER TABLE orders ADD COLUMN mark int;\n")

    code, report, stderr = rehearse(db_url, directory, fresh)

    assert code == 0, stderr
    assert report["rehearsal"]["backup"].endswith(only["id"])
    [warning] = report["rehearsal"]["warnings"]
    assert "unverified" in warning and only["id"] in warning


def test_rehearsal_flags_are_refused_without_a_backup_or_with_plan(db_url: str, tmp_path: Path) -> None:
    directory, _backups = backed_up(db_url, tmp_path)
    before = state(db_url)

    missing = run_pgwarden("migrate", db_url, "--dir", directory, "--rehearse-from", tmp_path / "none")
    alone = run_pgwarden("migrate", db_url, "--dir", directory, "--rehearsal-max-lock-hold", "1s")

    assert missing.returncode == 2 and "--rehearse-from" in missing.stderr
    assert alone.returncode == 2 and "--rehearse-from" in alone.stderr
    assert state(db_url) == before


def test_a_sealed_backup_is_rehearsed_with_its_identity_and_refused_without_it(
    db_url: str, tmp_path: Path
) -> None:
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    assert run_pgwarden("migrate", db_url, "--dir", directory).returncode == 0
    key = x25519.Identity.generate()
    identity = tmp_path / "key.txt"
    identity.write_text(f"{key}\n")
    backups = tmp_path / "sealed"
    sealed = run_pgwarden("backup", db_url, "--to", backups, "--encrypt-to", str(key.to_public()))
    assert sealed.returncode == 0, sealed.stderr
    (directory / "0002_flag.sql").write_text("ALTER TABLE orders ADD COLUMN flag int;\n")
    before = state(db_url)

    refused = run_pgwarden("migrate", db_url, "--dir", directory, "--rehearse-from", backups)

    assert refused.returncode == 2, refused.stderr
    assert state(db_url) == before and scratch_databases(db_url) == []
    code, report, stderr = rehearse(db_url, directory, backups, "--identity", str(identity))
    assert code == 0, stderr
    assert report["rehearsal"]["outcome"] == "Succeeded"
    assert str(key) not in stderr + str(report)
    assert [a["version"] for a in report["applied"]] == ["0002"]
