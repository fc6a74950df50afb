"""Benchmark: does a migration stall the application? (issue 20)

A steady read/write workload (psycopg clients: SELECT and UPDATE of one row by key, each timed) runs against a
table while the same migration (`ALTER TABLE accounts ADD COLUMN note text`, which needs ACCESS EXCLUSIVE)
runs, once with `pgwarden migrate` and once with plain `psql -f` of the same file, in two situations:

- (a) behind a read transaction held --hold seconds (default 30): psql's ALTER queues behind it and every
  query of the workload queues behind the ALTER; pgwarden's short lock timeouts let the queue go every attempt;
- (b) during a `pgwarden backup` of the database, its pg_dump held mid-stream (the test harness's pause point)
  for --hold seconds with its ACCESS SHARE locks: psql's ALTER queues behind the dump; pgwarden waits for the
  backup's announcement before taking any lock.

For each it prints the workload's p99 and max latency over the migration's window, beside the same workload's
baseline with no migration, and the migration's total time and outcome. Side by side in one run, on one server,
the machine's core count and load printed before and after:

    .venv/bin/python bench/app_stall.py               # --hold 30
    .venv/bin/python bench/app_stall.py --hold 10

To measure another checkout's pgwarden (main before a change), put its sources first on the path:
`PYTHONPATH=/path/to/copy/operator .venv/bin/python bench/app_stall.py`. Flags the migration is given that
an older pgwarden lacks are left out (it then runs with its own defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import machine
import psycopg
from pgwarden_testing import localpg

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
PAUSED_PGWARDEN = [sys.executable, "-m", "pgwarden_testing.paused"]
MIGRATION = "ALTER TABLE accounts ADD COLUMN note text;\n"
ROWS = 200_000  # with 128 bytes of padding each, a dump of some 30 MB: past the harness's mid-stream pause


@dataclass
class Measured:
    situation: str
    tool: str
    p99_ms: float
    max_ms: float
    migration_seconds: float
    outcome: str

    def line(self) -> str:
        return (
            f"{self.situation:<24} {self.tool:<9} p99 {self.p99_ms:>9.1f} ms   max {self.max_ms:>9.1f} ms   "
            f"migration {self.migration_seconds:>6.1f} s  {self.outcome}"
        )


class Workload:
    """`clients` sessions, each reading or updating one random row every `pause` seconds, every query timed."""

    def __init__(self, url: str, clients: int = 4, pause: float = 0.02) -> None:
        self.url, self.clients, self.pause = url, clients, pause
        self.samples: list[tuple[float, float]] = []  # (started, seconds)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self, number: int) -> None:
        rng = random.Random(number)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                key = rng.randint(1, ROWS)
                started = time.monotonic()
                if rng.random() < 0.5:
                    conn.execute("SELECT balance FROM accounts WHERE id = %s", (key,))
                else:
                    conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (key,))
                self.samples.append((started, time.monotonic() - started))
                time.sleep(self.pause)

    def between(self, start: float, end: float) -> tuple[float, float]:
        """p99 and max latency (ms) of the queries started in [start, end]."""
        waits = sorted(s for at, s in self.samples if start <= at <= end) or [0.0]
        return waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000, waits[-1] * 1000


def seed(server: localpg.LocalPostgres) -> str:
    name = "stall_template"
    url = server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, pad text)")
        conn.execute(
            "INSERT INTO accounts SELECT g, 0, repeat(md5(g::text), 4) FROM generate_series(1, %s) g", (ROWS,)
        )
        conn.execute("VACUUM ANALYZE accounts")
    return name


def fresh(server: localpg.LocalPostgres, template: str, name: str) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return server.url(name)


def pgwarden_flags() -> list[str]:
    """Bounds that let pgwarden outlast the hold, where this pgwarden has them."""
    helped = subprocess.run([PGWARDEN, "migrate", "--help"], capture_output=True, text=True).stdout
    flags = ["--lock-attempts", "60", "--lock-retry-within", "2m"]
    return flags if "--lock-retry-within" in helped else []


def migrate_with(tool: str, url: str, directory: Path, server: localpg.LocalPostgres) -> str:
    if tool == "psql":
        command = [server.install.tool("psql"), url, "-v", "ON_ERROR_STOP=1", "-q", "-f"]
        done = subprocess.run([*command, str(directory / "0001_note.sql")], capture_output=True, text=True)
        return "ok" if done.returncode == 0 else f"failed: {done.stderr.strip()[:80]}"
    command = [PGWARDEN, "migrate", url, "--dir", str(directory), "--json", *pgwarden_flags()]
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        return str(json.loads(done.stdout)["outcome"])
    except (ValueError, KeyError):
        return f"exit {done.returncode}: {done.stderr.strip()[:80]}"


@contextmanager
def read_transaction(url: str, hold: float) -> Iterator[None]:
    conn = psycopg.connect(url)
    conn.execute("SELECT count(*) FROM accounts")
    ends = threading.Timer(hold, conn.rollback)
    ends.start()
    try:
        yield
    finally:
        ends.join()
        conn.close()


@contextmanager
def backup_mid_stream(url: str, hold: float, to: Path) -> Iterator[None]:
    env = {"PGWARDEN_TEST_PAUSE_AT": "mid-stream", "PGWARDEN_TEST_PAUSE_SECONDS": str(int(hold))}
    backup = subprocess.Popen(
        [*PAUSED_PGWARDEN, "backup", url, "--to", str(to), "--compress", "none", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_environment(), **env},
    )
    assert backup.stderr is not None
    for line in backup.stderr:
        if "paused at mid-stream" in line:
            break
    try:
        yield
    finally:
        out, _ = backup.communicate(timeout=600)
        outcome = json.loads(out)["outcome"] if out.strip() else f"exit {backup.returncode}"
        print(f"  (the backup: {outcome})", flush=True)


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def measure(
    server: localpg.LocalPostgres,
    template: str,
    situation: str,
    tool: str,
    during: Callable[[str], AbstractContextManager[None]],
    scratch: Path,
) -> Measured:
    url = fresh(server, template, f"{situation.split()[0]}_{tool}".replace("(", "").replace(")", ""))
    directory = scratch / f"{situation.split()[0]}-{tool}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "0001_note.sql").write_text(MIGRATION)
    with Workload(url) as workload:
        time.sleep(2)
        with during(url):
            started = time.monotonic()
            outcome = migrate_with(tool, url, directory, server)
            took = time.monotonic() - started
        time.sleep(1)
    p99, worst = workload.between(started, started + took)
    return Measured(situation, tool, p99, worst, took, outcome)


def baseline(server: localpg.LocalPostgres, template: str, seconds: float) -> Measured:
    url = fresh(server, template, "baseline")
    with Workload(url) as workload:
        started = time.monotonic()
        time.sleep(seconds)
    p99, worst = workload.between(started, started + seconds)
    return Measured("baseline (no migration)", "-", p99, worst, 0.0, "-")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the blocker holds (default 30)")
    args = parser.parse_args()
    print(machine.describe(), flush=True)
    with localpg.running() as server, tempfile.TemporaryDirectory(prefix="pgwarden-stall-") as scratch:
        template = seed(server)
        print(f"PostgreSQL {server.version}, {ROWS} rows, hold {args.hold:.0f}s", flush=True)
        results = [baseline(server, template, 10.0)]
        print(results[-1].line(), flush=True)
        situations: list[tuple[str, Callable[[str], AbstractContextManager[None]]]] = [
            ("(a) read-transaction", lambda url: read_transaction(url, args.hold)),
            (
                "(b) during-backup",
                lambda url: backup_mid_stream(url, args.hold, Path(scratch) / f"backups-{time.monotonic()}"),
            ),
        ]
        for situation, during in situations:
            for tool in ("pgwarden", "psql"):
                results.append(measure(server, template, situation, tool, during, Path(scratch)))
                print(results[-1].line(), flush=True)
    print(machine.describe(), flush=True)


if __name__ == "__main__":
    main()
