"""Benchmark: our restore from MinIO against plain `pg_restore` of a local file of the same database, and our
memory; also the directory format restored with two jobs against the custom format.

    .venv/bin/python bench/restore_throughput.py                   # generates a 1 GB database first
    .venv/bin/python bench/restore_throughput.py --size-gb 0.05    # a quick smoke run

The baseline is `pg_dump -Fc -Z0` to a local file, restored with `pg_restore --single-transaction
--exit-on-error` into a new database (what ours runs too). Ours is `pgwarden restore --create` of a zstd:3
backup in MinIO: streamed from storage through SHA-256 and decompression into pg_restore, then every table's
rows counted and compared with the manifest, then renamed into place; its peak RSS is our process's VmHWM.
The target (issue 12): restore from MinIO, custom format, <= 1.1x plain pg_restore of a local file.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backup_throughput import (
    MiB,
    Run,
    bench_arguments,
    bench_database,
    bench_storage,
    database_size,
    dump_tool,
    pgwarden,
)

from pgwarden.engine.postgres.tools import find_tool, tool_invocation


def with_dbname(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def plain_restore(url: str, archive: Path) -> Run:
    """`pg_restore --single-transaction --exit-on-error -d NEW archive` into a database created for it."""
    name = f"plain_{secrets.token_hex(3)}"
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url) as conn:
        major = int(conn.info.server_version) // 10000
    tool = find_tool("pg_restore", min_major=major, purpose=f"a dump of PostgreSQL {major}")
    dbname_args, env = tool_invocation(with_dbname(url, name))
    started = time.monotonic()
    subprocess.run(
        [tool.path, *dbname_args, "--single-transaction", "--exit-on-error", "--no-password", str(archive)],
        env=env,
        check=True,
    )
    return Run("pg_restore --single-transaction of a local -Fc -Z0 file", time.monotonic() - started, 0)


def our_restore(url: str, location: str, env: dict[str, str], name: str, *flags: str) -> Run:
    target = with_dbname(url, f"ours_{secrets.token_hex(3)}")
    seconds, report, peak = pgwarden(["restore", target, "--from", location, "--create", *flags], env)
    assert report["outcome"] == "Succeeded", report
    return Run(name, seconds, 0, peak)


def drop_restored(url: str) -> None:
    """Drop the databases a run restored, so the next run does not share the server's cache with them."""
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname ~ '^(plain|ours)_'").fetchall()
        for (name,) in rows:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    args = bench_arguments(__doc__, "restore a dump of this database instead of generating one")

    with (
        bench_database(args.url, args.size_gb, args.tables) as url,
        bench_storage(args.to) as (to, env),
        tempfile.TemporaryDirectory(prefix="pgwarden-bench-restore-") as scratch,
    ):
        size = database_size(url)
        print(f"database: {size / MiB:,.0f} MiB on disk; cores: {os.cpu_count()}", file=sys.stderr)
        archive = Path(scratch) / "plain.dump"
        path, dbname_args, dump_env = dump_tool(url)
        subprocess.run([path, *dbname_args, "-Fc", "-Z0", "-f", str(archive)], env=dump_env, check=True)
        _s, custom_report, _p = pgwarden(["backup", url, "--to", to], env)
        _s, directory_report, _p = pgwarden(
            ["backup", url, "--to", to, "--format", "directory", "--jobs", "2"], env
        )
        custom_at = str(custom_report["backup"]["location"])
        directory_at = str(directory_report["backup"]["location"])

        baseline = plain_restore(url, archive)
        drop_restored(url)
        custom = our_restore(url, custom_at, env, "pgwarden restore zstd:3 custom from MinIO (streamed)")
        drop_restored(url)
        directory = our_restore(
            url, directory_at, env, "pgwarden restore zstd:3 directory, --jobs 2", "--jobs", "2"
        )
        drop_restored(url)

    runs = [baseline, custom, directory]
    print(f"\n{'run':58} {'seconds':>8} {'MiB/s of DB':>12} {'x baseline':>10} {'peak RSS':>9}")
    for run in runs:
        rss = f"{run.peak_rss / MiB:.0f} MiB" if run.peak_rss else "-"
        print(
            f"{run.name:58} {run.seconds:8.1f} {size / MiB / run.seconds:12.1f} "
            f"{run.seconds / baseline.seconds:9.2f}x {rss:>9}"
        )
    print(
        f"\nrestore from MinIO, custom format: {custom.seconds / baseline.seconds:.2f}x the time of plain "
        f"pg_restore of a local file (target <= 1.1x; ours also counts every row and compares); "
        f"directory --jobs 2: {directory.seconds / custom.seconds:.2f}x the custom format's time; "
        f"our peak RSS {max(custom.peak_rss or 0, directory.peak_rss or 0) / MiB:.0f} MiB"
    )


if __name__ == "__main__":
    main()
