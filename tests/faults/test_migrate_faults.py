"""`pgwarden migrate` under faults (issue 9): killed, terminated, cut off, locked out, timed out, fed hostile
checks. After each fault the database is at a known version with a truthful history, a RolledBack run left
the data as it was, no INVALID index is left, a rerun converges, and the canary password is never printed.

Where the process survives the fault it prints ONE JSON report with outcome, rollback, currentVersion and
applied, and exits 1; under SIGKILL nothing is printed and the uncommitted work must be gone.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import clone_database, history, migrations_dir, run_pgwarden, table_counts
from faults import (
    GRACE,
    Activity,
    Injector,
    Pgwarden,
    assert_no_secret,
    canary_password,
    databases,
    hold_lock,
    hold_migrator_lock,
    invalid_indexes,
    json_report,
    private_postgres,
    restart_postgres,
    wait_sessions_gone,
)

ROWS = 1000
# `audit` has no index and no default, so a lock on it holds up counting only: reading the schema locks
# a table only for its index definitions and default expressions.
BASE = {
    "0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);\n"
    f"INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, {ROWS}) g;\n"
    "CREATE TABLE audit (at timestamptz, what text);\n"
    "INSERT INTO audit SELECT now(), 'seed ' || g FROM generate_series(1, 100) g;\n"
}
NOTE = "ALTER TABLE orders ADD COLUMN note text;\n"
NOTE_DOWN = "ALTER TABLE orders DROP COLUMN note;\n"
REPORT_KEYS = ("outcome", "rollback", "currentVersion", "applied")


# --- the database before and after ------------------------------------------------------------------


@dataclass(frozen=True)
class DbState:
    """What a run can change, read from the database itself (never from a report)."""

    counts: dict[str, int]
    applied: list[str]
    columns: frozenset[str]
    indexes: frozenset[str]

    @classmethod
    def read(cls, url: str) -> DbState:
        with psycopg.connect(url, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                " AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
            ).fetchall()
            indexes = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'i'"
            ).fetchall()
        return cls(
            counts=table_counts(url),
            applied=[version for version, _type, success in history(url) if success],
            columns=frozenset(str(r[0]) for r in columns),
            indexes=frozenset(str(r[0]) for r in indexes),
        )

    @property
    def version(self) -> str | None:
        return max(self.applied, default=None)

    def committed_since(self, before: DbState) -> list[str]:
        return [v for v in self.applied if v not in before.applied]


@dataclass
class Shop:
    """A database at version 0001 (`orders`, 1,000 rows) on the canary server, and its migration folder."""

    url: str
    directory: Path
    password: str
    verify_args: list[str] = field(default_factory=list)

    def add(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.directory / name).write_text(text)

    def verify(self, yaml_text: str | None) -> None:
        if yaml_text is not None:
            path = self.directory.parent / "verify.yaml"
            path.write_text(yaml_text)
            self.verify_args = ["--verify", str(path)]

    def migrate(self, *args: str) -> CompletedProcess[str]:
        return run_pgwarden("migrate", self.url, "--dir", self.directory, "--json", *self.verify_args, *args)

    def start(self, *args: str) -> Pgwarden:
        return Pgwarden("migrate", self.url, "--dir", self.directory, "--json", *self.verify_args, *args)


@pytest.fixture(scope="module")
def shop_template(canary_pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = canary_pg.create_database()
    done = run_pgwarden("migrate", url, "--dir", migrations_dir(tmp_path_factory.mktemp("base"), extra=BASE))
    assert done.returncode == 0, done.stderr
    return url


@pytest.fixture
def shop(canary_pg: LocalPostgres, shop_template: str, tmp_path: Path) -> Shop:
    url = clone_database(shop_template, canary_pg.url())
    return Shop(url, migrations_dir(tmp_path / "migrations", extra=BASE), canary_pg.password)


# --- what must hold after a fault -----------------------------------------------------------------------


def assert_report_tells_the_truth(
    result: CompletedProcess[str],
    before: DbState,
    url: str,
    *,
    nothing_committed: bool,
    started: bool = True,
) -> dict[str, Any]:
    """The run survived the fault: exit 1 and one complete JSON report that matches the database.

    A run that never started (it was still waiting for the migrator lock or reading the history) may say
    Failed with a rollback block saying nothing was changed; once it started, nothing committed means
    RolledBack."""
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode == 1, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    report = json_report(result)
    missing = [key for key in REPORT_KEYS if key not in report]
    assert not missing, f"the report lacks {missing}: {report}"
    after = DbState.read(url)
    # A run locked out of the history table cannot know the version: it must say null, never guess.
    known = report["currentVersion"] is not None or started
    assert report["currentVersion"] == (after.version if known else None), report
    assert [a["version"] for a in report["applied"]] == after.committed_since(before), report
    assert report["outcome"] in ("RolledBack", "Failed"), report
    if not started:
        assert after == before, "a run that never started changed the database"
        assert report["outcome"] == "RolledBack" or report["rollback"]["outcome"] == "NotNeeded", report
    elif nothing_committed:
        assert report["outcome"] == "RolledBack", report
    if report["outcome"] == "RolledBack":
        assert after == before, "reported RolledBack, but the database differs from before the run"
    assert report["rollback"].get("outcome") in ("Succeeded", "Failed", "NotNeeded"), report
    return report


def assert_history_matches_effects(url: str) -> None:
    """0002 (a note column) is in the history exactly when its effect is in the database."""
    state = DbState.read(url)
    has_note = any(column.endswith(".note") for column in state.columns)
    assert has_note == ("0002" in state.applied), state
    assert invalid_indexes(url) == []


def assert_rerun_converges(shop: Shop, newest: str) -> None:
    """The same run without the fault succeeds at the newest version, rows intact."""
    result = shop.migrate()
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert result.returncode == 0, f"the rerun failed:\n{result.stdout}\n{result.stderr}"
    report = json_report(result)
    assert report["outcome"] == "Succeeded"
    assert report["currentVersion"] == newest
    # Nothing was changed by hand: what an earlier (interrupted) run of pgwarden committed is not drift.
    assert not report.get("drift", {}).get("detected"), report["drift"]
    after = DbState.read(shop.url)
    assert after.version == newest
    assert after.counts["public.orders"] == ROWS and after.counts["public.audit"] == 100
    assert invalid_indexes(shop.url) == []


def assert_refused_before_anything_changed(result: CompletedProcess[str], before: DbState, url: str) -> str:
    """Exit 2 and nothing changed; returns the message."""
    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode == 2, f"exit {result.returncode}\n{output}"
    assert DbState.read(url) == before
    return output


# --- the five failures reproduced in the issue ----------------------------------------------------------


def test_issue_2_row_loss_in_a_split_run_is_caught_before_the_first_commit(shop: Shop) -> None:
    shop.add(
        {
            "0002_trim.sql": "DELETE FROM orders WHERE id > 10;\n",
            "0003_idx.sql": "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n",
        }
    )
    before = DbState.read(shop.url)

    result = shop.migrate()

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert report["outcome"] == "RolledBack"
    assert table_counts(shop.url)["public.orders"] == ROWS
    assert "0002" not in DbState.read(shop.url).applied
    assert "orders_total_idx" not in DbState.read(shop.url).indexes
    assert_no_secret(shop.password, result.stdout, result.stderr)


def test_issue_3_a_non_transactional_file_runs_statement_by_statement_and_resumes_where_it_failed(
    shop: Shop,
) -> None:
    """Issue 18 lifted issue 3's refusal: such a file runs statement by statement, and a failure part-way is
    reported as Failed (the first index stays), leaves no INVALID index, and the corrected file resumes."""
    shop.add(
        {
            "0002_idx.sql": "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY orders_half_uniq ON orders ((id / 2));\n"
        }
    )

    result = shop.migrate()

    assert result.returncode == 1, result.stderr
    report = json_report(result)
    assert report["outcome"] == "Failed", report  # never RolledBack while the first index survives
    assert report["applied"] == [
        {**report["applied"][0], "version": "0002", "statements": {"applied": 1, "total": 2}}
    ]
    state = DbState.read(shop.url)
    assert "orders_total_idx" in state.indexes and "orders_half_uniq" not in state.indexes
    assert "0002" not in state.applied
    assert invalid_indexes(shop.url) == []
    shop.add(
        {
            "0002_idx.sql": "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n"
            "CREATE INDEX CONCURRENTLY orders_half_idx ON orders ((id / 2));\n"
        }
    )
    assert_rerun_converges(shop, "0002")
    assert {"orders_total_idx", "orders_half_idx"} <= DbState.read(shop.url).indexes


def test_issue_3_a_failed_concurrent_index_leaves_no_index_and_is_not_rolled_back_while_it_survives(
    shop: Shop,
) -> None:
    shop.add({"0002_idx.sql": "CREATE UNIQUE INDEX CONCURRENTLY orders_half_idx ON orders ((id / 2));\n"})
    before = DbState.read(shop.url)

    result = shop.migrate()

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=False)
    state = DbState.read(shop.url)
    assert invalid_indexes(shop.url) == []
    if report["outcome"] == "RolledBack":
        assert "orders_half_idx" not in state.indexes
    # The file is not in the history, so a corrected file must apply on the next run (no "already exists").
    shop.add({"0002_idx.sql": "CREATE INDEX CONCURRENTLY orders_half_idx ON orders ((id / 2));\n"})
    assert_rerun_converges(shop, "0002")


def test_issue_4_lock_timeout_bounds_the_whole_run_behind_a_lock_on_a_counted_table(
    shop: Shop, inject: Injector
) -> None:
    shop.add({"0002_note.sql": NOTE})
    before = DbState.read(shop.url)

    with hold_lock(shop.url, "orders"), shop.start("--lock-timeout", "200ms") as run:
        inject.record("lock held")
        started = time.monotonic()
        result = run.finish(timeout=45)
        elapsed = time.monotonic() - started

    assert elapsed < 30, f"a 200ms lock timeout let the run wait {elapsed:.0f}s"
    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert report["currentVersion"] == "0001" and report["applied"] == []
    assert "lock" in report["error"]["message"].lower() and "timeout" in report["error"]["message"].lower()
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_rerun_converges(shop, "0002")


@pytest.mark.parametrize(
    "check",
    [
        "SELECT 2; COMMIT",
        "WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d",
        "SELECT 1; DROP TABLE orders",
    ],
    ids=["commit", "data-modifying-cte", "second-statement"],
)
def test_issue_5_a_check_that_is_not_one_read_only_select_is_refused_before_anything_changes(
    shop: Shop, check: str, inject: Injector
) -> None:
    inject.record("hostile input")
    shop.add({"0002_note.sql": NOTE})
    shop.verify(f"checks:\n  - name: hostile\n    sql: {check!r}\n    atLeast: 0\n")
    before = DbState.read(shop.url)

    result = shop.migrate()

    assert_refused_before_anything_changed(result, before, shop.url)
    assert "orders.note" not in DbState.read(shop.url).columns
    assert_no_secret(shop.password, result.stdout, result.stderr)


# --- SIGKILL and SIGTERM at each phase of a run ---------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """A phase of a run: the migrations that reach it, what holds the run there, how it is recognised."""

    name: str
    files: dict[str, str]
    reached: Callable[[Activity], Callable[[], bool]]
    hold: Callable[[str], AbstractContextManager[Any]] | None = None
    verify: str | None = None
    committed_when_reached: tuple[str, ...] = ()
    newest: str = "0002"
    started: bool = True  # False: the run has not begun (no transaction yet) when the phase is reached


PHASES = [
    Phase(
        "waiting-for-migrator-lock",
        {"0002_note.sql": NOTE},
        reached=lambda a: a.ran("pg_try_advisory_lock"),
        hold=hold_migrator_lock,
        started=False,
    ),
    Phase(
        "reading-the-schema-before",
        {"0002_note.sql": NOTE},
        reached=lambda a: a.running("pg_get_indexdef", waiting_on_lock=True),
        hold=lambda url: hold_lock(url, "orders"),
    ),
    Phase(
        "counting-before",
        {"0002_note.sql": NOTE},
        reached=lambda a: a.running("count(", waiting_on_lock=True),
        hold=lambda url: hold_lock(url, "audit"),
    ),
    Phase(
        "applying-in-a-transaction",
        {"0002_note.sql": NOTE + "SELECT pg_sleep(2);\n"},
        reached=lambda a: a.running("pg_sleep"),
    ),
    Phase(
        "between-groups-of-a-split-run",
        {"0002_note.sql": NOTE, "0003_pause.sql": "-- pgwarden:no-transaction\nSELECT pg_sleep(2);\n"},
        reached=lambda a: a.running("pg_sleep"),
        committed_when_reached=("0002",),
        newest="0003",
    ),
    # CREATE INDEX CONCURRENTLY commits on its own; a killed run's server session finishes it regardless
    # (the lock is released right after the fault), so the rerun meets the index its predecessor built.
    Phase(
        "building-an-index-concurrently",
        {
            "0002_note.sql": "ALTER TABLE audit ADD COLUMN note text;\n",  # not orders: that one is locked
            "0003_idx.sql": "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n",
        },
        reached=lambda a: a.running("CREATE INDEX CONCURRENTLY", waiting_on_lock=True),
        hold=lambda url: hold_lock(url, "orders", "SHARE"),
        committed_when_reached=("0002",),
        newest="0003",
    ),
    Phase(
        "verifying",
        {"0002_note.sql": NOTE},
        reached=lambda a: a.running("pg_sleep"),
        verify="checks:\n  - name: slow\n    sql: SELECT count(*) FROM pg_sleep(2)\n    equals: 1\n",
    ),
]


@pytest.mark.parametrize("phase", PHASES, ids=[p.name for p in PHASES])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_at_any_phase_leaves_a_known_version_and_a_rerun_converges(
    shop: Shop, phase: Phase, signum: signal.Signals, inject: Injector
) -> None:
    shop.add(phase.files)
    shop.verify(phase.verify)
    before = DbState.read(shop.url)
    hold = phase.hold(shop.url) if phase.hold else contextlib.nullcontext()

    with Activity(shop.url) as activity, hold, shop.start() as run:
        run.wait_until(phase.reached(activity), phase.name)
        inject.signal(run, signum)
        result = run.finish(timeout=GRACE)  # the cause of the phase persists for the grace period
    wait_sessions_gone(shop.url)

    assert_no_secret(shop.password, result.stdout, result.stderr)
    if signum == signal.SIGTERM:
        assert_report_tells_the_truth(
            result,
            before,
            shop.url,
            nothing_committed=not phase.committed_when_reached,
            started=phase.started,
        )
    else:
        after = DbState.read(shop.url)
        assert after.committed_since(before) == list(phase.committed_when_reached)
        if not phase.committed_when_reached:
            assert after == before, "uncommitted work of the killed run survived"
    assert_history_matches_effects(shop.url)
    assert_rerun_converges(shop, phase.newest)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_signal_while_counting_after_a_failure_still_leaves_a_rolled_back_database(
    shop: Shop, signum: signal.Signals, inject: Injector
) -> None:
    shop.add({"0002_note.sql": NOTE + "SELECT pg_sleep(1);\nSELECT 1 / 0;\n"})
    before = DbState.read(shop.url)

    with Activity(shop.url) as activity, shop.start() as run:
        run.wait_until(activity.running("pg_sleep"), "applying 0002")
        # Taken after the counts before the run: only the count after the failure waits for it.
        with hold_lock(shop.url, "audit"):
            inject.record("lock held")
            run.wait_until(activity.running("count(", waiting_on_lock=True), "counting after the failure")
            inject.signal(run, signum)
            result = run.finish(timeout=GRACE)
    wait_sessions_gone(shop.url)

    assert_no_secret(shop.password, result.stdout, result.stderr)
    if signum == signal.SIGTERM:
        assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert DbState.read(shop.url) == before
    shop.add({"0002_note.sql": NOTE})  # never applied, so it may be corrected
    assert_rerun_converges(shop, "0002")


def test_sigterm_between_groups_with_rollback_down_undoes_what_was_committed(
    shop: Shop, inject: Injector
) -> None:
    shop.add(
        {
            "0002_note.sql": NOTE,
            "0002_note.down.sql": NOTE_DOWN,
            "0003_pause.sql": "-- pgwarden:no-transaction\nSELECT pg_sleep(2);\n",
        }
    )
    before = DbState.read(shop.url)

    with Activity(shop.url) as activity, shop.start("--rollback", "down") as run:
        run.wait_until(activity.running("pg_sleep"), "the non-transactional group")
        inject.signal(run, signal.SIGTERM)
        result = run.finish(timeout=GRACE)

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=False)
    assert report["outcome"] == "RolledBack", report
    assert report["rollback"]["strategy"] == "down"
    assert_history_matches_effects(shop.url)
    assert_rerun_converges(shop, "0003")


# --- its session ended, its server stopped ---------------------------------------------------------------


def test_pg_terminate_backend_while_applying_ends_in_a_rolled_back_report(
    shop: Shop, inject: Injector
) -> None:
    shop.add({"0002_note.sql": NOTE + "SELECT pg_sleep(2);\n"})
    before = DbState.read(shop.url)

    with Activity(shop.url) as activity, shop.start() as run:
        run.wait_until(activity.running("pg_sleep"), "applying 0002")
        inject.terminate_backends(activity)
        result = run.finish(timeout=GRACE)

    assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_history_matches_effects(shop.url)
    assert_rerun_converges(shop, "0002")


@pytest.fixture
def private_shop(tmp_path: Path) -> Iterator[tuple[LocalPostgres, Shop]]:
    """A shop on a PostgreSQL server of this test's own (canary password), which the test may stop."""
    with private_postgres(canary_password()) as server:
        url = server.create_database()
        shop = Shop(url, migrations_dir(tmp_path / "migrations", extra=BASE), server.password)
        done = shop.migrate()
        assert done.returncode == 0, done.stderr
        yield server, shop


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["stopped", "restarted"])
def test_postgres_stopped_while_applying_ends_in_a_report_and_loses_nothing(
    private_shop: tuple[LocalPostgres, Shop], restart: bool, inject: Injector
) -> None:
    server, shop = private_shop
    shop.add({"0002_note.sql": NOTE + "SELECT pg_sleep(2);\n"})
    before = DbState.read(shop.url)

    with Activity(shop.url) as activity, shop.start() as run:
        run.wait_until(activity.running("pg_sleep"), "applying 0002")
        inject.stop_postgres(server)
        if restart:
            inject.record("postgres restarted")
            restart_postgres(server)
        result = run.finish(timeout=60)
    if not restart:
        restart_postgres(server)

    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert_history_matches_effects(shop.url)
    assert_rerun_converges(shop, "0002")


# --- locks held by another session, timeouts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "mode"),
    [("pgwarden.schema_history", "ACCESS EXCLUSIVE"), ("orders", "ACCESS SHARE")],
    ids=["history-table-locked", "altered-table-read-by-another-session"],
)
def test_a_lock_held_by_another_session_ends_the_run_in_bounded_time_rolled_back(
    shop: Shop, table: str, mode: str, inject: Injector
) -> None:
    shop.add({"0002_note.sql": NOTE})
    before = DbState.read(shop.url)

    with hold_lock(shop.url, table, mode), shop.start("--lock-timeout", "200ms") as run:
        inject.record("lock held")
        started = time.monotonic()
        result = run.finish(timeout=45)
        elapsed = time.monotonic() - started

    assert elapsed < 30, f"a 200ms lock timeout let the run wait {elapsed:.0f}s"
    # Locked out of the history table, the run may end before it starts (while planning).
    started = not table.startswith("pgwarden.")
    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True, started=started)
    assert "lock" in report["error"]["message"].lower(), report
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_rerun_converges(shop, "0002")


def test_statement_timeout_hit_by_a_migration_statement_rolls_the_run_back(
    shop: Shop, inject: Injector
) -> None:
    inject.record("statement_timeout")
    shop.add({"0002_note.sql": NOTE + "SELECT pg_sleep(2);\n"})
    before = DbState.read(shop.url)

    result = shop.migrate("--statement-timeout", "500ms")

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert "statement timeout" in report["error"]["message"], report
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_rerun_converges(shop, "0002")


def test_statement_timeout_bounds_the_counting_before_the_run(shop: Shop, inject: Injector) -> None:
    inject.record("statement_timeout")
    shop.add({"0002_note.sql": NOTE})
    before = DbState.read(shop.url)

    # A lock timeout far beyond the statement timeout: only statement_timeout can end the count.
    with (
        hold_lock(shop.url, "orders"),
        shop.start("--lock-timeout", "1h", "--statement-timeout", "1s") as run,
    ):
        inject.record("lock held")
        result = run.finish(timeout=45)

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert "timeout" in report["error"]["message"], report
    assert_no_secret(shop.password, result.stdout, result.stderr)
    assert_rerun_converges(shop, "0002")


def test_statement_timeout_hit_by_a_check_fails_the_verification_and_rolls_back(
    shop: Shop, inject: Injector
) -> None:
    inject.record("statement_timeout")
    shop.add({"0002_note.sql": NOTE})
    shop.verify("checks:\n  - name: slow\n    sql: SELECT count(*) FROM pg_sleep(3)\n    equals: 1\n")
    before = DbState.read(shop.url)

    result = shop.migrate("--statement-timeout", "1s")

    report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
    assert "timeout" in report["error"]["message"], report
    assert_no_secret(shop.password, result.stdout, result.stderr)
    shop.verify("checks:\n  - name: quick\n    sql: SELECT count(*) FROM orders\n    equals: 1000\n")
    assert_rerun_converges(shop, "0002")


def test_a_bad_expect_name_is_refused_or_rolled_back_never_an_unexpected_error(
    shop: Shop, inject: Injector
) -> None:
    inject.record("hostile input")
    shop.add({"0002_note.sql": NOTE})
    shop.verify('expect:\n  tables: ["no such table!"]\n')
    before = DbState.read(shop.url)

    result = shop.migrate()

    if result.returncode == 2:
        message = assert_refused_before_anything_changed(result, before, shop.url)
        assert "no such table!" in message
    else:
        report = assert_report_tells_the_truth(result, before, shop.url, nothing_committed=True)
        assert "no such table!" in report["error"]["message"], report
    assert_no_secret(shop.password, result.stdout, result.stderr)


# --- issue 13: a rehearsal on a scratch copy ---------------------------------------------------------------


def rehearsal_copies(url: str) -> set[str]:
    """The scratch databases rehearsals made on the server of `url`."""
    return {name for name in databases(url) if "_pgw_rehearsal_" in name}


def rehearsal_sleeping(url: str) -> bool:
    """Whether 0002's slow statement runs on a rehearsal's scratch copy."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '%\\_pgw\\_rehearsal\\_%'"
            " AND query LIKE 'SELECT pg_sleep(60)%'"
        ).fetchone()
    return bool(row and row[0])


def test_sigkill_mid_rehearsal_leaves_no_scratch_database_and_the_database_untouched(
    shop: Shop, inject: Injector, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    backup = run_pgwarden("backup", shop.url, "--to", backups)
    assert backup.returncode == 0, backup.stderr
    shop.add({"0002_slow.sql": "ALTER TABLE orders ADD COLUMN flag int;\nSELECT pg_sleep(60);\n"})
    before = DbState.read(shop.url)
    admin = shop.url.rsplit("/", 1)[0] + "/postgres"

    with shop.start("--rehearse-from", str(backups)) as run:
        run.wait_until(lambda: rehearsal_sleeping(admin), "the rehearsal applying 0002 on its scratch copy")
        assert len(rehearsal_copies(admin)) == 1
        inject.signal(run, signal.SIGKILL)
        result = run.finish()

    assert result.returncode == -signal.SIGKILL and result.stdout == ""
    deadline = time.monotonic() + 30
    while rehearsal_copies(admin) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rehearsal_copies(admin) == set(), "the scratch copy outlived the SIGKILLed rehearsal"
    assert DbState.read(shop.url) == before
    assert_no_secret(shop.password, result.stdout, result.stderr)


def test_sigkill_while_the_restore_rollback_fills_its_copy_leaves_no_restored_copy_behind(
    shop: Shop, inject: Injector, tmp_path: Path
) -> None:
    """The restore rollback's `<db>_pgw_restore_…` has a guardian too: killed before the swap, the copy goes
    and the database stays as the failed run left it, under its name."""
    shop.add(
        {
            "0002_index.sql": "CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n",
            "0003_broken.sql": "UPDATE orders SET total = NULL WHERE id = 1;\n",
        }
    )
    counts = table_counts(shop.url)
    name = shop.url.rsplit("/", 1)[1].split("?")[0]
    admin = shop.url.rsplit("/", 1)[0] + "/postgres"
    args = ["--backup-to", str(tmp_path / "backups"), "--rollback", "restore"]

    with Pgwarden(
        "migrate", shop.url, "--dir", shop.directory, "--json", *args,
        pause_at="rollback-restored",
    ) as run:  # fmt: skip
        run.wait_until(run.stderr_says("paused at rollback-restored"), "the restored copy, before the swap")
        assert [d for d in databases(admin) if d.startswith(f"{name}_pgw_restore_")]
        inject.signal(run, signal.SIGKILL)
        result = run.finish()

    assert result.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while [d for d in databases(admin) if "_pgw_restore_" in d] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [d for d in databases(admin) if d.startswith(f"{name}_pgw")] == []
    assert table_counts(shop.url) == counts
    assert [v for v, _type, ok in history(shop.url) if ok] == ["0001", "0002"]
    assert_no_secret(shop.password, result.stdout, result.stderr)
