"""`pgwarden restore --table` (issue 24) under faults: its whole process tree SIGKILLed before and after the
move into the target, its session cut while the move waits for a lock, and locked out for longer than it may
wait. The target is either as it was or holds the complete table, never half of it, and no scratch database
`<db>_pgw_partial_*` outlives the next command.
"""

from __future__ import annotations

from collections.abc import Iterator
from subprocess import CompletedProcess
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import execute
from faults import (
    Activity,
    Contents,
    Injector,
    Pgwarden,
    Place,
    filesystem_place,
    hold_lock,
    json_report,
    run_pgwarden,
    scalar,
    scratch_databases,
    wait_sessions_gone,
)

SEED = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL);
CREATE INDEX orders_customer_idx ON orders (customer_id);
INSERT INTO orders SELECT g, g % 50 + 1, g * 1.5 FROM generate_series(1, 20000) g;
"""
ORDERS = 20000


class Shop:
    """A database seeded like the backup's source, from which the wrong rows were then deleted."""

    def __init__(self, pg: LocalPostgres, place: Place, location: str) -> None:
        self.url = pg.create_database()
        self.name = self.url.rsplit("/", 1)[1].split("?")[0]
        self.server = pg.url()
        self.place, self.location = place, location
        execute(self.url, SEED)
        execute(self.url, "DELETE FROM orders WHERE id > 500")

    def args(self, *flags: str) -> list[str]:
        return ["restore", self.url, "--from", self.location, "--json", "--table", "orders", *flags]

    def start(self, *flags: str, pause_at: str | None = None) -> Pgwarden:
        return Pgwarden(*self.args(*flags), env=self.place.env, pause_at=pause_at)

    def restore(self, *flags: str) -> CompletedProcess[str]:
        return run_pgwarden(*self.args(*flags), env=self.place.env, timeout=300)

    def scratch(self) -> list[str]:
        return [name for name in scratch_databases(self.server, self.name) if "_pgw_partial_" in name]


@pytest.fixture(scope="module")
def stored(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> tuple[Place, str]:
    source = pg.create_database()
    execute(source, SEED)
    place = filesystem_place(tmp_path_factory.mktemp("backups"))
    done = run_pgwarden("backup", source, "--to", place.uri, "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    return place, str(json_report(done)["backup"]["location"])


@pytest.fixture
def shop(pg: LocalPostgres, stored: tuple[Place, str]) -> Shop:
    return Shop(pg, *stored)


def killed_at(shop: Shop, point: str, inject: Injector, *flags: str) -> None:
    with shop.start(*flags, pause_at=point) as run:
        run.wait_until(run.stderr_says(f"paused at {point}"), point, timeout=180)
        inject.kill_tree(run)
        run.finish()
    wait_sessions_gone(shop.url, timeout=120)


def report_of(done: CompletedProcess[str], code: int) -> dict[str, Any]:
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-3000:]
    assert "unexpected error" not in done.stderr, done.stderr
    return json_report(done)


def test_killed_before_the_move_the_target_is_unchanged_and_the_rerun_restores_the_table(
    shop: Shop, inject: Injector
) -> None:
    before = Contents.read(shop.url)

    killed_at(shop, "partial-scratch-restored", inject, "--rename-to-suffix", "_restored")
    assert shop.scratch() != [], "the kill took the guardian too: its scratch copy is left"

    assert before.differences(Contents.read(shop.url)) == []
    report = report_of(shop.restore("--rename-to-suffix", "_restored"), 0)
    assert report["outcome"] == "Succeeded"
    assert scalar(shop.url, "SELECT count(*) FROM orders_restored") == ORDERS
    assert scalar(shop.url, "SELECT count(*) FROM orders") == 500
    assert shop.scratch() == [], "the killed run's scratch copy is swept by the next one"


def test_killed_after_the_move_the_table_is_whole_and_the_next_command_sweeps_the_copy(
    shop: Shop, inject: Injector
) -> None:
    killed_at(shop, "partial-moved", inject, "--rename-to-suffix", "_restored")
    assert shop.scratch() != []

    assert scalar(shop.url, "SELECT count(*) FROM orders_restored") == ORDERS, "moved in one transaction"
    again = shop.restore("--rename-to-suffix", "_restored")
    assert again.returncode == 2, again.stderr
    assert "orders_restored" in again.stdout + again.stderr
    assert shop.scratch() == [], "even a refused rerun settles what the killed run left"
    assert scalar(shop.url, "SELECT count(*) FROM orders_restored") == ORDERS


@pytest.fixture
def reader(shop: Shop) -> Iterator[psycopg.Connection[Any]]:
    """A long read of orders in an open transaction (ACCESS SHARE): --clean has to wait to drop the table."""
    with hold_lock(shop.url, "orders", mode="ACCESS SHARE") as conn:
        yield conn


def test_locked_out_longer_than_it_may_wait_the_restore_fails_with_the_target_unchanged(
    shop: Shop, inject: Injector, reader: psycopg.Connection[Any]
) -> None:
    inject.record("lock held")
    before = Contents.read(shop.url)

    done = shop.restore("--clean", "--lock-wait-timeout", "2s")

    report = report_of(done, 1)
    assert report["outcome"] == "Failed"
    assert "lock" in report["error"]["message"], report["error"]
    reader.rollback()
    assert before.differences(Contents.read(shop.url)) == []
    assert shop.scratch() == []


def test_its_session_cut_while_the_move_waits_the_restore_fails_with_the_target_unchanged(
    shop: Shop, inject: Injector, reader: psycopg.Connection[Any]
) -> None:
    before = Contents.read(shop.url)
    with shop.start("--clean", "--lock-wait-timeout", "5m") as run, Activity(shop.url) as activity:
        run.wait_until(activity.running("orders", waiting_on_lock=True), "the move waiting for its lock")
        inject.terminate_backends(activity)
        done = run.finish()

    report = report_of(done, 1)
    assert report["outcome"] == "Failed"
    reader.rollback()
    assert before.differences(Contents.read(shop.url)) == []
    assert shop.scratch() == []
    rerun = report_of(shop.restore("--clean"), 0)
    assert rerun["outcome"] == "Succeeded"
    assert scalar(shop.url, "SELECT count(*) FROM orders") == ORDERS
