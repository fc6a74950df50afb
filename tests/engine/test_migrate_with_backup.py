"""`migrate --backup-to … --rollback restore`: a failed run is undone from the backup taken before it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
from pgwarden_testing.localpg import LocalPostgres

DEMO = Path(__file__).resolve().parents[2] / "migrations" / "demo"
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))


def rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT c.id, c.email, count(o.id) FROM shop.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id"
            " GROUP BY c.id, c.email ORDER BY c.id"
        ).fetchall()


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'shop' ORDER BY 1")
        ]


def test_failed_run_after_a_committed_group_is_restored_from_its_backup(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = pg.create_database()
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in DEMO.glob("*.sql"):
        shutil.copy(path, directory)
    subprocess.run([PGWARDEN, "migrate", url, "--dir", str(directory), "--target", "0004"], check=True)
    before_rows, before_tables = rows(url), tables(url)
    # 0005 (CONCURRENTLY) commits on its own; 0007 then deletes data and fails.
    (directory / "0007_bad.sql").write_text(
        "CREATE TABLE shop.extra (id int);\nDELETE FROM shop.order_lines WHERE id > 0;\nSELECT 1/0;\n"
    )

    run = subprocess.run(
        [
            PGWARDEN,
            "migrate",
            url,
            "--dir",
            str(directory),
            "--json",
            "--backup-to",
            str(tmp_path / "backups"),
            "--rollback",
            "restore",
        ],
        capture_output=True,
        text=True,
    )

    report = json.loads(run.stdout)
    assert run.returncode == 1
    assert report["outcome"] == "RolledBack"
    assert report["rollback"]["strategy"] == "restore" and report["rollback"]["outcome"] == "Succeeded"
    assert report["rollback"]["versionAfter"] == "0004"
    assert report["backup"]["sha256"] and report["backup"]["sizeBytes"] > 0
    assert tables(url) == before_tables  # shop.extra is gone, nothing is missing
    assert rows(url) == before_rows
    assert pg.password not in run.stdout + run.stderr
