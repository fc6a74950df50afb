"""Benchmark: `pgwarden migrate` against `psql -1 -f` on the same small files, and where pgwarden's time goes.

    .venv/bin/python bench/migrate_speed.py               # 200 files, median of 3 runs each
    .venv/bin/python bench/migrate_speed.py --files 20 --runs 5

Each run gets a fresh database; the three take turns within each round. Measured side by side in one run: psql
applying every file in one transaction, the `pgwarden migrate` command (start-up included, as a user or a Job
meets it), and the engine alone (`migrate()` in this process, start-up excluded). One more engine run under
cProfile splits pgwarden's time into its parts: reading and parsing the files, the statements themselves, the
history and journal rows, the checks before commit, the state capture and the connections.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from machine import describe
from pgwarden_testing import localpg

from pgwarden.api.reports import Outcome
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
# pgwarden's parts, by the function whose cumulative time is that part (module path, function name).
PARTS = {
    "read and parse files": ("engine/migrate/files.py", "load_migrations"),
    "statements": ("engine/migrate/applying.py", "execute"),
    "history rows": ("engine/migrate/history.py", "record_migration"),
    "journal rows": ("engine/migrate/run_journal.py", "step"),
    "checks before commit": ("engine/migrate/gate.py", "verify_before_commit"),
    "state capture": ("engine/postgres/state.py", "capture_state"),
    "settle first": ("engine/recovery/settle.py", "settle_server"),
    "settle the journal": ("engine/recovery/settle.py", "settle_runs"),
    "connections": ("engine/postgres/connect.py", "connect"),
}


def write_files(directory: Path, count: int) -> None:
    """`count` small migrations: a table, an index and a few rows each, as a schema history has."""
    for i in range(1, count + 1):
        directory.joinpath(f"{i:04d}_table_{i}.sql").write_text(
            f"CREATE TABLE table_{i} (id int PRIMARY KEY, name text NOT NULL DEFAULT '', "
            f"created timestamptz NOT NULL DEFAULT now());\n"
            f"CREATE INDEX table_{i}_name ON table_{i} (name);\n"
            f"INSERT INTO table_{i} (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c');\n"
        )


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def psql_run(server: localpg.LocalPostgres, url: str, files: list[Path]) -> None:
    command = [server.install.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1"]
    command += [arg for file in files for arg in ("-f", str(file))]
    subprocess.run([*command, url], check=True, stdout=subprocess.DEVNULL)


def cli_run(url: str, directory: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    done = subprocess.run(
        [PGWARDEN, "migrate", url, "--dir", str(directory), "--json"], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"pgwarden migrate failed: {done.stderr[-2000:]}")


def engine_run(url: str, directory: Path) -> None:
    report = migrate(url, MigrateOptions(directory=directory))
    if report.outcome != Outcome.SUCCEEDED:
        raise SystemExit(f"migrate() did not succeed: {report.error}")


def parts_of(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each part's function in one profiled engine run."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    found = dict.fromkeys(PARTS, 0.0)
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        for part, (path, name) in PARTS.items():
            if function == name and filename.endswith(path):
                found[part] += cumulative
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200, help="how many migration files (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the median is printed (default 3)")
    args = parser.parse_args()
    print(describe())
    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-bench-migrate-"))
    directory = workdir / "migrations"
    directory.mkdir()
    write_files(directory, args.files)
    files = sorted(directory.glob("*.sql"))
    with localpg.running() as server:
        engine_run(server.create_database(), directory)  # warm: imports and the server's caches
        psql: list[float] = []
        cli: list[float] = []
        engine: list[float] = []
        for _ in range(args.runs):  # in turn within each round, so that a change of load hits all three alike
            psql.append(timed(lambda: psql_run(server, server.create_database(), files)))
            cli.append(timed(lambda: cli_run(server.create_database(), directory)))
            engine.append(timed(lambda: engine_run(server.create_database(), directory)))
        profile = cProfile.Profile()
        url = server.create_database()
        profile.enable()
        engine_run(url, directory)
        profile.disable()
    base = statistics.median(psql)
    print(f"\n{args.files} files, median of {args.runs} runs, PostgreSQL {server.version}")
    print(f"{'':28}{'seconds':>9}{'x psql':>9}")
    for name, times in (
        ("psql -1 -f", psql),
        ("pgwarden migrate (command)", cli),
        ("migrate() (engine)", engine),
    ):
        print(f"{name:28}{statistics.median(times):9.3f}{statistics.median(times) / base:9.2f}")
    parts = parts_of(profile)
    total = sum(time for time in parts.values())
    print(
        f"\nwhere the engine's time goes (one run under cProfile, parts may overlap; {total:.2f} s listed):"
    )
    for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {part:24}{seconds:8.3f} s")
    print(describe())


if __name__ == "__main__":
    main()
