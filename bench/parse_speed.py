"""Benchmark: reading and parsing migration files (`load_migrations`), without a server or a profiler.

    .venv/bin/python bench/parse_speed.py                       # this checkout's code, 200 files
    .venv/bin/python bench/parse_speed.py --also main=/work/main --files 200 --rounds 9

bench/migrate_speed.py splits a whole run by cProfile, which inflates code that makes many small Python
calls (building pglast's AST was one); this measures the same part plainly. The files are
migrate_speed's. Each round loads the directory in a fresh process per code (`--also LABEL=DIR` puts
DIR/operator first on PYTHONPATH, the way bench/startup.py does), in turn, so a change of load touches
every code alike; a process loads once to warm up, then `--loads` times, and reports its fastest load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine
from migrate_speed import write_files
from other_code import add_also_flag, codes_to_measure

LOAD = """
import json, sys, time
from pathlib import Path
from pgwarden.engine.migrate.files import load_migrations
directory, loads = Path(sys.argv[1]), int(sys.argv[2])
load_migrations(directory)
times = []
for _ in range(loads):
    started = time.perf_counter()
    load_migrations(directory)
    times.append(time.perf_counter() - started)
print(json.dumps(min(times)))
"""


def fastest_load(root: Path | None, directory: Path, loads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if root is not None:
        env["PYTHONPATH"] = str(root / "operator")
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(directory), str(loads)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"load_migrations failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200, help="how many migration files (default 200)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds, the median is printed (default 9)")
    parser.add_argument("--loads", type=int, default=5, help="timed loads per process (default 5)")
    add_also_flag(parser)
    args = parser.parse_args()
    codes = codes_to_measure(parser, args.also)
    print(machine.describe())
    directory = Path(tempfile.mkdtemp(prefix="pgwarden-bench-parse-"))
    try:
        write_files(directory, args.files)
        times: dict[str, list[float]] = {code: [] for code in codes}
        for _ in range(args.rounds):
            for code, root in codes.items():
                times[code].append(fastest_load(root, directory, args.loads))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    base = statistics.median(times["this"])
    print(
        f"\nload_migrations of {args.files} files, median of {args.rounds} rounds (fastest of {args.loads})"
    )
    print(f"{'code':12}{'seconds':>9}{'x this':>9}")
    for code, measured in times.items():
        print(f"{code:12}{statistics.median(measured):9.3f}{statistics.median(measured) / base:9.2f}")
    print(machine.describe())


if __name__ == "__main__":
    main()
