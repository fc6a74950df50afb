"""The kill sweep (issue 18, item 5): every command, killed as when its container dies — the whole process tree
SIGKILLed at once, scratch guardians included — at each of its pause points and at random moments, then run
once more (the same command, or `pgwarden recover`), and the database judged from the outside:

- it exists under its name and accepts connections;
- it holds exactly what it held before the run, or what the run completes to (schema and rows compared);
- no scratch database of a dead run is left (one whose owner's advisory lock is free);
- no incomplete backup is listed.

Runs in `make test`: kills run in parallel, each on a database of its own (a clone of one template), so the
sweep fits in a few minutes of wall time. The seed is printed; PGWARDEN_SWEEP_SEED replays a sweep. The
summary (kills by command and point, runs that broke the invariant, the longest time a database was missing
or closed after a kill until the next run settled it) goes to the terminal summary and to kill-sweep.json
in pytest's cache (.pytest_cache/d/kill-sweep/).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres
from pgwarden_testing.paused import PAUSED, REACHED, TRACE_ENV

from cli.helpers import migrations_dir, run_pgwarden
from faults import Contents, Pgwarden, accepts_connections, databases, kill_process_tree
from pgwarden.engine.postgres.scratch import scratch_key

SWEEP_PROPERTY = "kill-sweep"
WORKERS = 4
RANDOM_KILLS = {
    "migrate": 12,
    "restore": 10,
    "backup": 10,
    "verify-backup": 10,
    "rehearsal": 10,
}  # per command
SEED = int(os.environ.get("PGWARDEN_SWEEP_SEED") or secrets.randbelow(1_000_000))
ONLY = os.environ.get("PGWARDEN_SWEEP_ONLY", "")  # replay: only the variants whose name contains this

SHOP = {
    "0001_shop.sql": "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);\n"
    "INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 500) g;\n"
    "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL);\n"
    "INSERT INTO orders SELECT g, 1 + g % 500, g * 1.5 FROM generate_series(1, 3000) g;\n"
}
# A run split in three commits: 0002 in a transaction, 0003 statement by statement, 0004 in a transaction.
SPLIT = {
    "0002_note.sql": "ALTER TABLE orders ADD COLUMN note text;\nUPDATE orders SET note = 'n' WHERE id % 7 = 0;\n",
    "0002_note.down.sql": "ALTER TABLE orders DROP COLUMN note;\n",
    "0003_indexes.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_total_idx ON orders (total);\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_name_idx ON customers (name);\n",
    "0003_indexes.down.sql": "DROP INDEX CONCURRENTLY IF EXISTS orders_total_idx;\n"
    "DROP INDEX CONCURRENTLY IF EXISTS customers_name_idx;\n",
    "0004_audit.sql": "CREATE TABLE audit (id int, what text);\n"
    "INSERT INTO audit SELECT g, 'event ' || g FROM generate_series(1, 200) g;\n",
    "0004_audit.down.sql": "DROP TABLE audit;\n",
}
FAILS = {"0005_fails.sql": "UPDATE customers SET name = name || '!' WHERE id > 0;\nSELECT 1 / 0;\n"}


# --- the lab: one server, a template database, a backup of it ----------------------------------------------


@dataclass
class Lab:
    pg: LocalPostgres
    root: Path
    template: str
    backup: Path  # a backup of the template (for restores, drills and rehearsals)
    dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return self.pg.url()

    def url(self, name: str) -> str:
        return self.pg.url(name)

    def clone(self) -> str:
        name = f"sweep_{secrets.token_hex(5)}"
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def migrations(self, files: dict[str, str]) -> Path:
        key = json.dumps(files, sort_keys=True)
        if key not in self.dirs:
            self.dirs[key] = migrations_dir(
                self.root / f"migrations_{len(self.dirs)}", extra={**SHOP, **files}
            )
        return self.dirs[key]


@pytest.fixture(scope="module")
def lab(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("sweep")
    name = f"sweep_template_{secrets.token_hex(4)}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    done = run_pgwarden("migrate", pg.url(name), "--dir", migrations_dir(root / "base", extra=SHOP))
    assert done.returncode == 0, done.stderr
    backup = run_pgwarden("backup", pg.url(name), "--to", root / "template-backups")
    assert backup.returncode == 0, backup.stderr
    return Lab(pg, root, name, root / "template-backups")


# --- what a kill is tried on ------------------------------------------------------------------------------


@dataclass
class Target:
    """One run's database and the places it writes to."""

    name: str
    url: str
    scratch: Path


Args = Callable[[Lab, Target], list[str]]


def _no_preparation(_lab: Lab, _target: Target) -> None:
    return None


@dataclass(frozen=True)
class Variant:
    command: str
    name: str
    args: Args
    recover_settles: bool  # `pgwarden recover` alone brings a killed run to before or complete
    exists_before: bool = True
    backups_of: Callable[[Target], Path | None] = lambda _t: None
    prepare: Callable[[Lab, Target], None] = _no_preparation


def _changed_since_the_backup(_lab: Lab, target: Target) -> None:
    """Rows gone and a table added since the template's backup, so a restore --clean changes something."""
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id > 1000")
        conn.execute("CREATE TABLE extra (id int)")


def _backup_of_its_own(lab: Lab, target: Target) -> None:
    """A backup of the target itself, so its drill's scratch database is named for it alone."""
    done = run_pgwarden("backup", target.url, "--to", target.scratch / "backups")
    assert done.returncode == 0, done.stderr


def _migrate(files: dict[str, str], *extra: str) -> Args:
    return lambda lab, t: ["migrate", t.url, "--dir", str(lab.migrations(files)), "--json", *extra]


def _with_restore(files: dict[str, str], *extra: str) -> Args:
    def args(lab: Lab, t: Target) -> list[str]:
        backups = ["--backup-to", str(t.scratch / "backups"), "--rollback", "restore"]
        return [*_migrate(files, *extra)(lab, t), *backups]

    return args


VARIANTS = [
    Variant("migrate", "migrate transaction split", _migrate(SPLIT), recover_settles=False),
    Variant(
        "migrate", "migrate none perMigration", _migrate(SPLIT, "--transaction", "perMigration", "--rollback", "none"),
        recover_settles=False,
    ),
    Variant(
        "migrate", "migrate down perMigration (fails)",
        _migrate({**SPLIT, **FAILS}, "--transaction", "perMigration", "--rollback", "down"),
        recover_settles=True,
    ),
    Variant(
        "migrate", "migrate restore split (fails)", _with_restore({**SPLIT, **FAILS}), recover_settles=True,
        backups_of=lambda t: t.scratch / "backups",
    ),
    Variant(
        "restore", "restore --create",
        lambda lab, t: ["restore", t.url, "--from", str(lab.backup), "--create", "--json"],
        recover_settles=True, exists_before=False,
    ),
    Variant(
        "restore", "restore --clean",
        lambda lab, t: ["restore", t.url, "--from", str(lab.backup), "--clean", "--json"],
        recover_settles=True, prepare=_changed_since_the_backup,
    ),
    Variant(
        "backup", "backup --verify",
        lambda lab, t: ["backup", t.url, "--to", str(t.scratch / "backups"), "--verify", "--json"],
        recover_settles=True, backups_of=lambda t: t.scratch / "backups",
    ),
    Variant(
        "verify-backup", "verify-backup",
        lambda lab, t: ["verify-backup", str(t.scratch / "backups"), "--on", t.url, "--json"],
        recover_settles=True, prepare=_backup_of_its_own,
    ),
    Variant(
        "rehearsal", "migrate --rehearse-from",
        lambda lab, t: [*_migrate(SPLIT)(lab, t), "--rehearse-from", str(lab.backup)],
        recover_settles=True,
    ),
]  # fmt: skip


@dataclass
class Calibrated:
    """A clean run of a variant: how long it took, the pause points it reached, what it completes to."""

    seconds: float
    first_point: float
    points: Counter[str]
    complete: Contents | None


@dataclass
class Kill:
    """One kill and what the run after it left."""

    command: str
    variant: str
    at: str  # a pause point (name@n) or "random"
    delay: float | None
    follow_up: str
    broken: list[str]
    missing_seconds: float
    follow_up_seconds: float

    def describe(self) -> str:
        when = self.at if self.delay is None else f"{self.delay:.2f}s in"
        return f"{self.variant} killed at {when}, then {self.follow_up} ({self.follow_up_seconds:.1f}s)"


def _target(lab: Lab, variant: Variant) -> Target:
    name = lab.clone() if variant.exists_before else f"sweep_new_{secrets.token_hex(5)}"
    scratch = lab.root / "runs" / name
    scratch.mkdir(parents=True)
    target = Target(name, lab.url(name), scratch)
    variant.prepare(lab, target)
    return target


def _contents(lab: Lab, target: Target) -> Contents | None:
    return Contents.read(target.url) if accepts_connections(lab.server, target.name) else None


def calibrate(lab: Lab, variant: Variant) -> Calibrated:
    """A clean run through the test wrapper, tracing the pause points it reaches and when the first was."""
    target = _target(lab, variant)
    started, first = time.monotonic(), None
    with Pgwarden(*variant.args(lab, target), env={TRACE_ENV: "1"}, pause_at="") as run:
        while run.process.poll() is None:
            if first is None and REACHED in run.stderr:
                first = time.monotonic() - started
            time.sleep(0.02)
        seconds = time.monotonic() - started
        result = run.finish(timeout=300)
    assert result.returncode in (0, 1), f"{variant.name}: {result.stdout}\n{result.stderr}"
    points = Counter(
        line.removeprefix(REACHED) for line in result.stderr.splitlines() if line.startswith(REACHED)
    )
    return Calibrated(seconds, first if first is not None else 0.0, points, _contents(lab, target))


# --- one kill ---------------------------------------------------------------------------------------------


def _orphaned_scratch(lab: Lab, of: Target) -> list[str]:
    """Scratch databases of the target whose owner is gone: nobody holds the advisory lock a live owner
    holds (its own, named for it; `backup --verify`'s, named for the backups in its location)."""
    marks = ("_pgw_restore_", "_pgw_verified_", "_pgw_rehearsal_", "_pgw_drill_", "_pgw_restoring_")
    ids = {p.name.replace("-", "_").lower() for p in (of.scratch / "backups").glob("*")}
    found = [
        d
        for d in databases(lab.server)
        if (d.startswith(of.name) and any(m in d for m in marks))
        or (d.startswith("pgwarden_verify_") and d.removeprefix("pgwarden_verify_") in ids)
    ]
    orphans = []
    with psycopg.connect(lab.server, autocommit=True) as conn:
        for name in found:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [scratch_key(name)]).fetchone()
            if row and row[0]:
                orphans.append(name)
                conn.execute("SELECT pg_advisory_unlock(%s)", [scratch_key(name)])
    return orphans


def _incomplete_backups(where: Path | None) -> list[str]:
    """Backups listed (a manifest written) whose dump is not all there."""
    if where is None or not where.exists():
        return []
    bad = []
    for manifest in where.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        dump = manifest.parent / data["dumpFile"]
        if not dump.exists() or (dump.is_file() and dump.stat().st_size != data["sizeBytes"]):
            bad.append(manifest.parent.name)
    return bad


class Watch:
    """From the kill on: how long the database was missing or closed to connections."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab, self.name = lab, name
        self.started = time.monotonic()
        self.back: float | None = None
        self.was_down = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                up = accepts_connections(self.lab.server, self.name)
            except psycopg.Error:
                up = False
            if up and self.back is None:
                self.back = time.monotonic() - self.started
                return
            self.was_down = self.was_down or not up
            time.sleep(0.025)

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return (self.back or 0.0) if self.was_down else 0.0


def kill_once(
    lab: Lab,
    variant: Variant,
    calibrated: Calibrated,
    *,
    point: str | None,
    delay: float | None,
    follow_up: str,
) -> Kill:
    target = _target(lab, variant)
    before = _contents(lab, target)
    with Pgwarden(*variant.args(lab, target), pause_at=point) as run:
        if point is not None:
            run.wait_until(run.stderr_says(f"{PAUSED}{point.split('@')[0]}"), point, timeout=240)
        else:
            time.sleep(delay or 0.0)
        kill_process_tree(run.process.pid)
        run.finish()
    watch = Watch(lab, target.name)
    again_started = time.monotonic()
    if follow_up == "recover":
        again = run_pgwarden("recover", target.url, "--json", timeout=300)
    else:
        again = run_pgwarden(*variant.args(lab, target), timeout=300)
    # A database that did not exist before the run (restore --create) is not missing: it is not there yet.
    missing = watch.seconds() if variant.exists_before else 0.0
    again_seconds = time.monotonic() - again_started
    broken = []
    if again.returncode not in (0, 1) or "unexpected error" in again.stdout + again.stderr:
        broken.append(f"the {follow_up} run after the kill: exit {again.returncode}: {again.stderr[-500:]}")
    after = _contents(lab, target)
    must_exist = variant.exists_before or follow_up == "same"
    if after is None and must_exist:
        broken.append(f"{target.name} is missing or closed to connections")
    elif after is not None and after not in (before, calibrated.complete):
        broken.append(f"neither as before nor complete: {_how(before, calibrated.complete, after)}")
    if orphans := _orphaned_scratch(lab, target):
        broken.append(f"scratch databases left: {orphans}")
    if bad := _incomplete_backups(variant.backups_of(target)):
        broken.append(f"incomplete backups listed: {bad}")
    at = point or "random"
    return Kill(variant.command, variant.name, at, delay, follow_up, broken, missing, again_seconds)


def _how(before: Contents | None, complete: Contents | None, after: Contents) -> str:
    """How the database differs from what it may be (pure)."""
    parts = [
        f"{what}: {'; '.join(state.differences(after))[:400]}"
        for what, state in (("before", before), ("complete", complete))
        if state
    ]
    return " / ".join(parts)


Job = tuple[Variant, str | None, float | None, str]


def plan_kills(
    variants: list[Variant], calibrated: dict[Variant, Calibrated], rng: random.Random
) -> list[Job]:
    """Every kill of the sweep, per command: each pause point the command reaches, once (in the first of its
    variants that reaches it; the middle occurrence of a point reached repeatedly), and its random moments
    while at work, spread over its variants. Follow-ups alternate between the same command and `recover`
    where `recover` alone can settle the command's kill."""
    jobs: list[Job] = []
    for command in dict.fromkeys(v.command for v in variants):
        mine = [v for v in variants if v.command == command]
        points: dict[str, tuple[Variant, int]] = {}
        for variant in mine:
            for name, count in calibrated[variant].points.items():
                points.setdefault(name, (variant, count))
        kills: list[tuple[Variant, str | None, float | None]] = [
            (variant, name if count == 1 else f"{name}@{(count + 1) // 2}", None)
            for name, (variant, count) in sorted(points.items())
        ]
        for index in range(RANDOM_KILLS[command]):
            variant = mine[index % len(mine)]
            run = calibrated[variant]
            kills.append((variant, None, rng.uniform(max(0.0, run.first_point - 0.5), run.seconds)))
        for index, (variant, point, delay) in enumerate(kills):
            follow_up = "recover" if variant.recover_settles and index % 2 else "same"
            jobs.append((variant, point, delay, follow_up))
    return jobs


# Above the suite's 300 s: about 80 kills take 3-6 minutes on 2 shared cores, longer when the machine is busier.
@pytest.mark.timeout(900)
def test_every_command_killed_anywhere_is_settled_by_the_next_run(
    lab: Lab, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    variants = [v for v in VARIANTS if ONLY in v.name]
    with ThreadPoolExecutor(WORKERS) as pool:
        calibrations = dict(zip(variants, pool.map(lambda v: calibrate(lab, v), variants), strict=True))
        jobs = plan_kills(variants, calibrations, rng)
        kills = list(
            pool.map(
                lambda job: kill_once(
                    lab, job[0], calibrations[job[0]], point=job[1], delay=job[2], follow_up=job[3]
                ),
                jobs,
            )
        )
    summary = summarise(kills, time.monotonic() - started)
    request.node.user_properties.append((SWEEP_PROPERTY, json.dumps(summary)))
    (request.config.cache.mkdir("kill-sweep") / "kill-sweep.json").write_text(
        json.dumps({"summary": summary, "kills": [asdict(k) for k in kills]}, indent=1)
    )
    broken = [k for k in kills if k.broken]
    assert not broken, f"seed {SEED}: " + "\n".join(
        f"{k.variant} at {k.at} ({k.delay}), then {k.follow_up}: {k.broken}" for k in broken
    )
    missing = {v.command for v in variants} - {k.command for k in kills if k.at == "random"}
    assert not missing, f"no random kills of {missing}"


def summarise(kills: list[Kill], seconds: float) -> dict[str, object]:
    by_point = Counter(f"{k.command}: {k.at.split('@')[0]}" for k in kills)
    return {
        "seed": SEED,
        "kills": len(kills),
        "byCommand": dict(Counter(k.command for k in kills)),
        "byPoint": dict(sorted(by_point.items())),
        "broken": sum(1 for k in kills if k.broken),
        "longestMissingSeconds": round(max((k.missing_seconds for k in kills), default=0.0), 3),
        "longestMissingAfter": max(kills, key=lambda k: k.missing_seconds).describe() if kills else None,
        "wallSeconds": round(seconds, 1),
    }
