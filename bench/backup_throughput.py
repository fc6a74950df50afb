"""Benchmark: our streaming backup to MinIO against plain `pg_dump -Fc -Z0 > /dev/null`, the fastest a dump of
that database can be, and our memory; also what sealing with age costs and what the directory format with
two jobs gains on four large tables.

    .venv/bin/python bench/backup_throughput.py                    # generates a 1 GB database first
    .venv/bin/python bench/backup_throughput.py --size-gb 0.05     # a quick smoke run
    .venv/bin/python bench/backup_throughput.py --url postgresql://…  # an existing database (not modified)

Ours writes real backups to a local MinIO (or --to URI), so the comparison includes compression, SHA-256,
the upload and the row counts at the dump's snapshot. Peak RSS is our process's VmHWM (pg_dump's is apart).
The targets (issue 12): backup zstd:3 <= 1.3x pg_dump -Fc -Z0; peak RSS <= 100 MB; sealing <= +10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pgwarden_testing import localpg, s3server

from pgwarden.engine.postgres.tools import find_tool, server_version_text, tool_invocation

GiB = 1024**3
MiB = 1024**2
ROWS_PER_BATCH = 1_000_000
PGWARDEN = [sys.executable, "-c", "from pgwarden.cli import entrypoint; entrypoint()"]
# A well-known test recipient (its identity is not needed: the bench never restores the sealed backup).
BENCH_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id bigint PRIMARY KEY, customer_id int NOT NULL, placed_at timestamptz NOT NULL, status text NOT NULL,
    amount numeric(12, 2) NOT NULL, note text, attributes jsonb
);
"""
BATCH = """
INSERT INTO {table}
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


def table_names(tables: int) -> list[str]:
    """bench_orders, then bench_orders_1 … for more tables (other benches migrate bench_orders)."""
    return ["bench_orders", *(f"bench_orders_{n}" for n in range(1, tables))]


def generate(url: str, size: int, tables: int = 1) -> None:
    """Fill the database with orders, spread over `tables` tables, until it is at least `size` bytes on disk."""
    names = table_names(tables)
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(SCHEMA.format(table=name))
        next_id: dict[str, int] = {}
        for name in names:
            row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {name}").fetchone()
            next_id[name] = int(row[0]) + 1 if row else 1
        batch = max(ROWS_PER_BATCH // tables, 1)
        turn = 0
        while (current := database_size(url)) < size:
            print(
                f"  generating: {current / MiB:,.0f} MiB of {size / MiB:,.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
            name = names[turn % tables]
            conn.execute(
                BATCH.format(table=name), {"start": next_id[name], "stop": next_id[name] + batch - 1}
            )
            next_id[name] += batch
            turn += 1
        for name in names:
            conn.execute(f"VACUUM ANALYZE {name}")


def dump_tool(url: str) -> tuple[str, list[str], dict[str, str]]:
    with psycopg.connect(url) as conn:
        version = server_version_text(int(conn.info.server_version))
    tool = find_tool("pg_dump", min_major=int(version.split(".")[0]), purpose=f"PostgreSQL {version}")
    dbname_args, env = tool_invocation(url)
    return tool.path, dbname_args, env


def plain_pg_dump(url: str) -> Run:
    """`pg_dump -Fc -Z0 > /dev/null`: the dump alone, nothing done with its bytes."""
    path, dbname_args, env = dump_tool(url)
    started = time.monotonic()
    command = [path, *dbname_args, "--format=custom", "--compress=0"]
    subprocess.run(command, stdout=subprocess.DEVNULL, env=env, check=True)  # stdout is /dev/null
    return Run("pg_dump -Fc -Z0 > /dev/null", time.monotonic() - started, 0)


def _watch_peak_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            return
        stop.wait(0.1)


def pgwarden(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, object], int]:
    """Run `pgwarden ARGS --json` in its own process, as users run it: seconds, report, peak RSS."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*PGWARDEN, *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    peak, stop = [0], threading.Event()
    watcher = threading.Thread(target=_watch_peak_rss, args=(process.pid, peak, stop), daemon=True)
    watcher.start()
    out, err = process.communicate()
    stop.set()
    watcher.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"pgwarden {args[0]} failed (exit {process.returncode}):\n{err[-3000:]}\n{out}")
    return seconds, json.loads(out), peak[0]


def our_backup(url: str, to: str, env: dict[str, str], name: str, *flags: str) -> Run:
    seconds, report, peak = pgwarden(["backup", url, "--to", to, *flags], env)
    backup = report["backup"]
    assert isinstance(backup, dict)
    return Run(name, seconds, int(backup["sizeBytes"]), peak)


@contextmanager
def bench_storage(to: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """Where our backups go: --to as given, or a bucket on a MinIO started for the bench."""
    if to:
        yield to, {}
        return
    s3server.use_build_script(Path(__file__).resolve().parent.parent / "hack" / "build-minio.sh")
    server = s3server.start()
    try:
        yield f"s3://{server.create_bucket()}/bench", server.env()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@contextmanager
def bench_database(url: str | None, size_gb: float, tables: int) -> Iterator[str]:
    """The database to dump: --url as given, or one generated on a server started for the bench."""
    if url:
        yield url
        return
    server = localpg.start()
    try:
        generated = server.create_database("bench")
        print(
            f"generating a {size_gb:g} GB database ({tables} tables) on PostgreSQL {server.version}",
            file=sys.stderr,
        )
        generate(generated, int(size_gb * GiB), tables)
        yield generated
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def print_runs(runs: list[Run], baseline: Run, size: int) -> None:
    print(
        f"\n{'run':58} {'seconds':>8} {'MiB/s of DB':>12} {'stored MiB':>11} {'x baseline':>10} {'peak RSS':>9}"
    )
    for run in runs:
        rss = f"{run.peak_rss / MiB:.0f} MiB" if run.peak_rss else "-"
        stored = f"{run.output_bytes / MiB:11.1f}" if run.output_bytes else f"{'-':>11}"
        print(
            f"{run.name:58} {run.seconds:8.1f} {size / MiB / run.seconds:12.1f} {stored} "
            f"{run.seconds / baseline.seconds:9.2f}x {rss:>9}"
        )


def bench_arguments(description: str | None, url_help: str) -> argparse.Namespace:
    """The options the backup and restore benches share: the database (given or generated) and the storage."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help=url_help)
    parser.add_argument(
        "--size-gb", type=float, default=1.0, help="size of the generated database (default 1)"
    )
    parser.add_argument("--tables", type=int, default=4, help="large tables to spread it over (default 4)")
    parser.add_argument(
        "--to", help="where our backups go (default: a bucket on a MinIO started for the bench)"
    )
    return parser.parse_args()


def main() -> None:
    args = bench_arguments(__doc__, "benchmark this database instead of generating one")

    with bench_database(args.url, args.size_gb, args.tables) as url, bench_storage(args.to) as (to, env):
        size = database_size(url)
        print(f"database: {size / MiB:,.0f} MiB on disk; cores: {os.cpu_count()}", file=sys.stderr)
        plain_pg_dump(url)  # warm the cache once so no run pays for the first read from disk
        baseline = plain_pg_dump(url)
        custom = our_backup(url, to, env, "pgwarden backup zstd:3, custom, to MinIO", "--compress", "zstd:3")
        sealed = our_backup(
            url, to, env, "pgwarden backup zstd:3, custom, sealed with age", "--encrypt-to", BENCH_RECIPIENT
        )
        directory = our_backup(
            url,
            to,
            env,
            "pgwarden backup zstd:3, directory, --jobs 2",
            "--format",
            "directory",
            "--jobs",
            "2",
        )
    runs = [baseline, custom, sealed, directory]
    print_runs(runs, baseline, size)
    print(
        f"\nbackup, zstd:3, custom, to MinIO: {custom.seconds / baseline.seconds:.2f}x the time of "
        f"pg_dump -Fc -Z0 > /dev/null (target <= 1.3x); peak RSS {custom.peak_rss / MiB:.0f} MiB "
        f"(target <= 100 MB); sealing with age costs {100 * (sealed.seconds / custom.seconds - 1):+.1f} % "
        f"(target <= 10 %); directory --jobs 2 takes {directory.seconds / custom.seconds:.2f}x the custom "
        f"format's time; highest peak RSS of ours {max(r.peak_rss or 0 for r in runs[1:]) / MiB:.0f} MiB"
    )


if __name__ == "__main__":
    main()
