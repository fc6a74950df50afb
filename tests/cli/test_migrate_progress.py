"""While a CREATE INDEX CONCURRENTLY runs long, `pgwarden migrate` says on stderr which migration is running
and the build's phase from pg_stat_progress_create_index (issue 13), with --json too (stdout keeps only the
report)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
from helpers import execute, migrations_dir, run_pgwarden, start_pgwarden


def test_a_long_concurrent_index_build_shows_its_migration_and_phase_on_stderr(
    db_url: str, tmp_path: Path
) -> None:
    directory = migrations_dir(
        tmp_path / "m", extra={"0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY, total int);\n"}
    )
    assert run_pgwarden("migrate", db_url, "--dir", directory).returncode == 0
    execute(db_url, "INSERT INTO orders SELECT g, g FROM generate_series(1, 10000) g")
    (directory / "0002_index.sql").write_text("CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n")
    lines: list[str] = []
    # An open snapshot older than the build holds it in its last phase until this transaction ends.
    with psycopg.connect(db_url) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM orders").fetchone()
        run = start_pgwarden("migrate", db_url, "--dir", directory, "--lock-timeout", "60s", "--json")
        assert run.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(run.stderr or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("waiting for old snapshots" in line for line in lines) and time.monotonic() < deadline:
            assert run.poll() is None, "".join(lines)
            time.sleep(0.1)
        holder.rollback()
    assert run.wait(timeout=60) == 0, "".join(lines)
    reader.join(timeout=10)
    assert run.stdout is not None
    report = json.loads(run.stdout.read())

    progress = next(line for line in lines if "waiting for old snapshots" in line)
    assert progress.startswith("0002 0002_index.sql:1 running for "), progress
    assert "CREATE INDEX CONCURRENTLY orders_total" in progress and "index build on orders" in progress
    assert report["outcome"] == "Succeeded" and [a["version"] for a in report["applied"]] == ["0002"]
