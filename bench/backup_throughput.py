"""Benchmark: our streaming backup against plain `pg_dump -Fc` with the same compression, to see what the
pipeline (in-process compression, SHA-256, storage writes, snapshot counts) costs or gains, and its memory.

    .venv/bin/python bench/backup_throughput.py                    # generates a 1 GB database first
    .venv/bin/python bench/backup_throughput.py --size-gb 0.05     # a quick smoke run
    .venv/bin/python bench/backup_throughput.py --url postgresql://…  # an existing database (not modified)

Plain pg_dump writes to a pipe into `wc -c` (its bytes counted, then dropped); ours writes a real backup to a temporary directory (or --to URI), so
the comparison includes our storage writes. Peak RSS is our process's VmHWM (pg_dump's memory is apart).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgwarden.engine.pgtools import find_tool, server_version_text, tool_invocation
from pgwarden.testing import localpg

GiB = 1024**3
MiB = 1024**2
ROWS_PER_BATCH = 1_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, placed_at timestamptz NOT NULL, status text NOT NULL,
    amount numeric(12, 2) NOT NULL, note text, attributes jsonb
);
"""
BATCH = """
INSERT INTO bench_orders
SELECT g, (g * 7919) %% 100000, timestamptz '2024-01-01' + g * interval '1 second',
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g %% 4], (g %% 100000) / 7.0,
       'order ' || g || ' ' || md5(g::text),
       jsonb_build_object('channel', (ARRAY['web', 'app', 'shop'])[1 + g %% 3], 'items', 1 + g %% 9,
                          'ref', substr(md5((g * 31)::text), 1, 12))
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) g
"""


@dataclass
class Run:
    name: str
    seconds: float
    output_bytes: int
    peak_rss: int | None = None


def database_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def generate(url: str, size: int) -> None:
    """Fill the database with orders until it is at least `size` bytes on disk."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        row = conn.execute("SELECT coalesce(max(id), 0) FROM bench_orders").fetchone()
        next_id = int(row[0]) + 1 if row else 1
        while (current := database_size(url)) < size:
            print(
                f"  generating: {current / MiB:,.0f} MiB of {size / MiB:,.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
            conn.execute(BATCH, {"start": next_id, "stop": next_id + ROWS_PER_BATCH - 1})
            next_id += ROWS_PER_BATCH
        conn.execute("VACUUM ANALYZE bench_orders")


def plain_pg_dump(url: str, level: int) -> Run:
    """`pg_dump -Fc -Z gzip:N` to /dev/null, counting the bytes it writes."""
    with psycopg.connect(url) as conn:
        version = server_version_text(int(conn.info.server_version))
    tool = find_tool("pg_dump", min_major=int(version.split(".")[0]), purpose=f"PostgreSQL {version}")
    dbname_args, env = tool_invocation(url)
    started = time.monotonic()
    # `| wc -c`: the bytes are counted by a C program, so the baseline pays nothing for our Python.
    dump = subprocess.Popen(
        [tool.path, *dbname_args, "--format=custom", f"--compress={level}"], stdout=subprocess.PIPE, env=env
    )
    counted = subprocess.run(["wc", "-c"], stdin=dump.stdout, capture_output=True, text=True, check=True)
    if dump.wait() != 0:
        raise SystemExit("plain pg_dump failed")
    total = int(counted.stdout.split()[0])
    return Run(f"pg_dump -Fc -Z{level} (gzip) | wc -c", time.monotonic() - started, total)


def _watch_peak_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            return
        stop.wait(0.1)


def our_backup(url: str, to: str, compression: str) -> Run:
    """`pgwarden backup` in its own process, as users run it; its peak RSS read from /proc."""
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pgwarden.cli import entrypoint; entrypoint()",
            "backup",
            url,
            "--to",
            to,
            "--compress",
            compression,
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak, stop = [0], threading.Event()
    watcher = threading.Thread(target=_watch_peak_rss, args=(process.pid, peak, stop), daemon=True)
    watcher.start()
    out, _ = process.communicate()
    stop.set()
    watcher.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"pgwarden backup failed: {out}")
    report = json.loads(out)
    return Run(
        f"pgwarden backup --compress {compression}", seconds, int(report["backup"]["sizeBytes"]), peak[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="benchmark this database instead of generating one")
    parser.add_argument(
        "--size-gb", type=float, default=1.0, help="size of the generated database (default 1)"
    )
    parser.add_argument("--to", help="where our backups go (default: a temporary directory, removed after)")
    parser.add_argument("--gzip-level", type=int, default=6, help="gzip level for the like-for-like pair")
    args = parser.parse_args()

    server = None
    if args.url:
        url = args.url
    else:
        server = localpg.start()
        url = server.create_database("bench")
        print(f"generating a {args.size_gb:g} GB database on PostgreSQL {server.version}", file=sys.stderr)
        generate(url, int(args.size_gb * GiB))
    workdir = None if args.to else tempfile.mkdtemp(prefix="pgwarden-bench-")
    to = args.to or str(workdir)
    try:
        size = database_size(url)
        print(f"database: {size / MiB:,.0f} MiB on disk; cores: {os.cpu_count()}", file=sys.stderr)
        # Warm the cache once so neither side pays for the first read from disk.
        plain_pg_dump(url, 1)
        baseline = plain_pg_dump(url, args.gzip_level)
        runs = [
            baseline,
            our_backup(url, to, f"gzip:{args.gzip_level}"),
            our_backup(url, to, "zstd:3"),
            our_backup(url, to, "lz4"),
        ]
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\n{'run':45} {'seconds':>8} {'MiB/s of DB':>12} {'output MiB':>11} {'vs pg_dump':>10} {'peak RSS':>9}"
    )
    for run in runs:
        rate = size / MiB / run.seconds
        ratio = baseline.seconds / run.seconds
        rss = f"{run.peak_rss / MiB:.0f} MiB" if run.peak_rss else "-"
        print(
            f"{run.name:45} {run.seconds:8.1f} {rate:12.1f} {run.output_bytes / MiB:11.1f} {ratio:9.2f}x {rss:>9}"
        )
    same = runs[1]
    print(
        f"\nthroughput ratio, same compression (gzip:{args.gzip_level}): {baseline.seconds / same.seconds:.2f}x "
        f"plain pg_dump -Fc; default zstd:3: {baseline.seconds / runs[2].seconds:.2f}x; "
        f"our peak RSS {max(r.peak_rss or 0 for r in runs[1:]) / MiB:.0f} MiB"
    )


if __name__ == "__main__":
    main()
