"""Benchmark: what `migrate --rehearse-from` costs on a large database — restoring the backup into a scratch
copy and running the plan there — against the real run alone.

    .venv/bin/python bench/rehearsal_overhead.py                  # generates a 1 GB database first
    .venv/bin/python bench/rehearsal_overhead.py --size-gb 0.05   # a quick smoke run

The migration builds an index on the big table and adds a column (ACCESS EXCLUSIVE until COMMIT), the kind
of change a rehearsal is for. The real run alone goes to a copy of the database (CREATE DATABASE ... TEMPLATE),
so both runs start from the same data; the backup is taken once, beforehand, and not counted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backup_throughput import GiB, MiB, database_size, generate, pgwarden
from pgwarden_testing import localpg

MIGRATION = """ALTER TABLE bench_orders ADD COLUMN flag int;
CREATE INDEX bench_orders_customer ON bench_orders (customer_id);
"""


def run_pgwarden(*args: str) -> tuple[float, dict[str, Any]]:
    """Run `pgwarden ARGS --json`: seconds it took and its report (failing loudly when it failed)."""
    seconds, report, _peak_rss = pgwarden(list(args), {})
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-gb", type=float, default=1.0, help="size of the generated database (default 1)"
    )
    args = parser.parse_args()

    server = localpg.start()
    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-bench-rehearsal-"))
    try:
        url = server.create_database("bench")
        print(f"generating a {args.size_gb:g} GB database on PostgreSQL {server.version}", file=sys.stderr)
        generate(url, int(args.size_gb * GiB))
        size = database_size(url)
        migrations = workdir / "migrations"
        migrations.mkdir()
        (migrations / "0001_flag_and_index.sql").write_text(MIGRATION)
        backup_seconds, _ = run_pgwarden("backup", url, "--to", str(workdir / "backups"))
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_real TEMPLATE bench")
        real_seconds, real = run_pgwarden("migrate", server.url("bench_real"), "--dir", str(migrations))
        total_seconds, rehearsed = run_pgwarden(
            "migrate", url, "--dir", str(migrations), "--rehearse-from", str(workdir / "backups")
        )
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)

    rehearsal = rehearsed["rehearsal"]
    longest = max(
        (lock for lock in rehearsal["locks"] if lock["blocksWrites"]), key=lambda lock: lock["heldSeconds"]
    )
    print(f"\ndatabase: {size / MiB:,.0f} MiB on disk; backup taken beforehand in {backup_seconds:.1f} s")
    print(f"{'what':48} {'seconds':>8}")
    print(f"{'real run alone (on a copy)':48} {real_seconds:8.1f}")
    print(f"{'rehearsal: restore into the scratch copy':48} {rehearsal['restoreSeconds']:8.1f}")
    print(f"{'rehearsal: run on the scratch copy':48} {rehearsal['runSeconds']:8.1f}")
    print(f"{'rehearsal + real run, whole command':48} {total_seconds:8.1f}")
    print(
        f"\noverhead: {total_seconds - real_seconds:.1f} s, {total_seconds / real_seconds:.1f}x the real run alone "
        f"(restore {rehearsal['restoreSeconds'] / real_seconds:.1f}x, rehearsed run "
        f"{rehearsal['runSeconds'] / real_seconds:.1f}x); longest lock that blocks writes in the rehearsal: "
        f"{longest['mode']} on {longest['relation']} {longest['heldSeconds']:.1f} s ({longest['statement']}); "
        f"the real run reported {real['durationSeconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
