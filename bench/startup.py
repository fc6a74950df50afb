"""Benchmark: how long the command line takes before it does anything (issue 22, item 1), beside an empty
Python start measured in the same run.

    .venv/bin/python bench/startup.py                              # 11 runs of each, this checkout's code
    .venv/bin/python bench/startup.py --also main=/tmp/main-copy   # and another copy's code, side by side

Each round runs every case once, in turn, so a change of load touches every case alike; the first round
is a warm-up and is not counted. The cases: `python -c pass`, `pgwarden --version`, `pgwarden --help` and
`pgwarden migrate --plan` of 10 small files against a local server, and a migration Job's container:
`pgwarden job migrate` with the environment the operator's Job manifest gives it (its Secret resolved as
a kubelet would), from the process's start to its first SQL statement in the server's log
(log_statement=all), each run on a new database. `--also LABEL=DIR` runs the same
console script with DIR/operator first on PYTHONPATH, so the code of another checkout (e.g. main's, from
`git archive main operator | tar -x -C DIR`) is measured in the same run with the same interpreter.

Every run finds its modules compiled, as an install from a wheel does (pip compiles them; so does the
image's): the runs write and read their bytecode under a temporary PYTHONPYCACHEPREFIX, the warm-up round
writing it, whatever PYTHONDONTWRITEBYTECODE says. Peak memory is not measured here: a child's
ru_maxrss starts from its parent's, since it is forked from it (`/usr/bin/time -f %M` measures it).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import machine
import psycopg
import yaml
from other_code import add_also_flag, codes_to_measure
from pgwarden_testing import localpg

from pgwarden.api.migration import DatabaseMigration
from pgwarden.api.task import TERMINATION_LOG_ENV
from pgwarden.operator.jobs import JobSettings, migration_job

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
FILES = 10
TARGETS_MS = {"--version": 100, "--help": 100, "migrate --plan": 300, "job: first SQL": 500}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "migration-shop.yaml"
# A statement in the server's log, and the moment it was logged (log_line_prefix's default starts with %m).
STATEMENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ .*LOG:  statement: ")


@dataclass
class Case:
    """One command, run under one copy of the code; what each of its counted runs cost."""

    name: str
    code: str
    argv: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self) -> None:
        """Wall and CPU seconds of one run; a failed run stops the bench, with its error."""
        start = time.perf_counter()
        process = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            failed = subprocess.run(self.argv, env=self.env, capture_output=True, text=True, check=False)
            sys.exit(f"{self.name} ({self.code}) exited {process.returncode}: {failed.stderr[-2000:]}")
        self.wall.append(wall)
        self.cpu.append(usage.ru_utime + usage.ru_stime)


@dataclass
class JobCase(Case):
    """`pgwarden job migrate` as the Job's container runs it: wall is from its start to its first SQL
    statement in the server's log, CPU its whole run's (migrating 10 files into a new database)."""

    server: localpg.LocalPostgres | None = None
    files: dict[str, str] = field(default_factory=dict)

    def measure(self) -> None:
        assert self.server is not None
        url = self.server.create_database()
        termination = self.server.data_dir.parent / "termination-log"
        env = {**self.env, **job_env(url, self.files), TERMINATION_LOG_ENV: str(termination)}
        log = self.server.data_dir.parent / "server.log"
        offset = log.stat().st_size
        start = time.time()
        process = subprocess.Popen(self.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed = subprocess.run(self.argv, env=env, capture_output=True, text=True, check=False)
            sys.exit(f"{self.name} ({self.code}) failed: {failed.stderr[-2000:]}{failed.stdout[-2000:]}")
        with log.open(encoding="utf-8", errors="replace") as text:
            text.seek(offset)
            first = next(m for line in text if (m := STATEMENT.match(line)))
        logged = datetime.strptime(first.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        self.wall.append(logged - start)
        self.cpu.append(usage.ru_utime + usage.ru_stime)


def job_env(url: str, files: dict[str, str]) -> dict[str, str]:
    """The environment a kubelet gives the Job the operator builds for an inline DatabaseMigration of
    `files` on the database at `url` (its Secret's `uri`)."""
    body = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "DatabaseMigration")
    body = copy.deepcopy(body)
    body["metadata"].update(namespace="shop", uid="0f0e0d0c-1111-2222-3333-444455556666", generation=1)
    body["spec"]["migrations"] = {"inline": [{"name": n, "sql": sql} for n, sql in files.items()]}
    for optional in ("backupBefore", "policy", "verify"):
        body["spec"].pop(optional, None)
    manifest = migration_job(DatabaseMigration.model_validate(body), JobSettings(image="pgwarden:bench"))
    secrets = {body["spec"]["database"]["secretRef"]["name"]: {"uri": url}}
    env: dict[str, str] = {}
    for item in manifest["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref: dict[str, Any] = item.get("valueFrom", {}).get("secretKeyRef", {})
        value = (
            item.get("value") if "value" in item else secrets.get(ref.get("name", ""), {}).get(ref.get("key"))
        )
        if value is not None:
            env[item["name"]] = value
    return env


def write_migrations(directory: Path) -> None:
    """10 small migrations, each a table with an index, the kind a young project has."""
    for n in range(1, FILES + 1):
        (directory / f"{n:04d}_table_{n}.sql").write_text(
            f"CREATE TABLE table_{n} (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz);\n"
            f"CREATE INDEX table_{n}_created_at ON table_{n} (created_at);\n"
        )


def cases(
    codes: dict[str, Path | None], server: localpg.LocalPostgres, migrations: Path, pycache: Path
) -> list[Case]:
    url = server.create_database("bench")
    files = {path.name: path.read_text() for path in sorted(migrations.iterdir())}
    unwanted = ("DATABASE_URL", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in unwanted}
    base["PYTHONPYCACHEPREFIX"] = str(pycache)
    found = [Case("python -c pass", "-", [sys.executable, "-c", "pass"], base)]
    for code, root in codes.items():
        env = {**base, **({"PYTHONPATH": str(root / "operator")} if root else {})}
        found += [
            Case("--version", code, [PGWARDEN, "--version"], env),
            Case("--help", code, [PGWARDEN, "--help"], env),
            Case("migrate --plan", code, [PGWARDEN, "migrate", url, "--dir", str(migrations), "--plan"], env),
            JobCase("job: first SQL", code, [PGWARDEN, "job", "migrate"], env, server=server, files=files),
        ]
    return found


def report(measured: list[Case]) -> None:
    baseline = statistics.median(measured[0].wall)
    print(f"\n{'case':16} {'code':8} {'wall ms':>8} {'x pass':>7} {'CPU ms':>7} {'target ms':>9}")
    for case in measured:
        wall = statistics.median(case.wall)
        target = TARGETS_MS.get(case.name)
        print(
            f"{case.name:16} {case.code:8} {wall * 1000:8.0f} {wall / baseline:7.1f} "
            f"{statistics.median(case.cpu) * 1000:7.0f} "
            f"{'≤ ' + str(target) if target else '':>9}"
        )
    print(f"(medians of {len(measured[0].wall)} runs; x pass: the median wall time over `python -c pass`'s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=11, help="counted runs of each case (default 11)")
    add_also_flag(parser)
    args = parser.parse_args()
    codes = codes_to_measure(parser, args.also)

    print(machine.describe())
    server = localpg.start()
    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-bench-startup-"))
    try:
        migrations = workdir / "migrations"
        migrations.mkdir()
        write_migrations(migrations)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            conn.execute("SELECT pg_reload_conf()")
        measured = cases(codes, server, migrations, workdir / "pycache")
        for _ in range(args.runs + 1):
            for case in measured:
                case.measure()
        for case in measured:  # the warm-up round
            del case.wall[0], case.cpu[0]
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    report(measured)
    print(machine.describe())


if __name__ == "__main__":
    main()
