"""Scratch databases never outlive their run: dropped when the block ends (however it ends), by their guardian
when the owning process is SIGKILLed, and by the next run's sweep when the guardian died too; a sweep never
drops a scratch database whose owner is alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.engine.postgres.scratch import scratch_database, scratch_key
from pgwarden.engine.restore.drill import DRILL_MARK


def exists(pg: LocalPostgres, name: str) -> bool:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def wait_gone(pg: LocalPostgres, name: str, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not exists(pg, name):
            return True
        time.sleep(0.1)
    return False


def test_a_scratch_database_exists_inside_the_block_and_is_dropped_after_it(pg: LocalPostgres) -> None:
    name = "t_pgw_rehearsal_block"
    with scratch_database(pg.url(), name) as url:
        assert exists(pg, name)
        with psycopg.connect(url) as conn:  # a session still open on it does not keep it
            conn.execute("CREATE TABLE t (id int)")
            with pytest.raises(RuntimeError), scratch_database(pg.url(), "t_pgw_rehearsal_inner"):
                raise RuntimeError("the work failed")
            assert not exists(pg, "t_pgw_rehearsal_inner")
    assert not exists(pg, name)


OWNER = """
import sys, time
from pgwarden.engine.postgres.scratch import scratch_database
with scratch_database(sys.argv[1], sys.argv[2]):
    print("created", flush=True)
    time.sleep(600)
"""


def test_the_guardian_drops_it_when_its_owner_is_sigkilled(pg: LocalPostgres) -> None:
    name = "t_pgw_rehearsal_killed"
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), pg.url(), name],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "created"
    assert exists(pg, name)

    os.killpg(owner.pid, signal.SIGKILL)  # the whole process group: the guardian is not in it
    owner.wait()

    assert wait_gone(pg, name), f"{name} outlived its SIGKILLed owner"


def test_the_next_scratch_database_sweeps_one_whose_owner_and_guardian_are_gone(pg: LocalPostgres) -> None:
    abandoned = "t_pgw_rehearsal_abandoned"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {abandoned}")  # as a killed Pod leaves it: no owner, no guardian

    with scratch_database(pg.url(), "t_pgw_rehearsal_next"):
        assert not exists(pg, abandoned)


def test_a_sweep_never_drops_a_scratch_database_whose_owner_is_alive(pg: LocalPostgres) -> None:
    live = "t_pgw_rehearsal_live"
    with psycopg.connect(pg.url(), autocommit=True) as holder:
        holder.execute(f"CREATE DATABASE {live}")
        holder.execute("SELECT pg_advisory_lock(%s)", [scratch_key(live)])  # its owner's lock
        with scratch_database(pg.url(), "t_pgw_rehearsal_sweeper"):
            assert exists(pg, live)
        holder.execute(f"DROP DATABASE {live}")


def test_an_abandoned_drill_database_is_swept_and_a_live_one_is_not(pg: LocalPostgres) -> None:
    abandoned = f"shop{DRILL_MARK}dead01"  # as engine.restore.drill names them: <database>_pgw_drill_<random>
    live = f"shop{DRILL_MARK}live01"
    with psycopg.connect(pg.url(), autocommit=True) as holder:
        holder.execute(f"CREATE DATABASE {abandoned}")  # a drill whose Pod was killed, guardian included
        holder.execute(f"CREATE DATABASE {live}")
        holder.execute("SELECT pg_advisory_lock(%s)", [scratch_key(live)])  # a drill still running
        try:
            with scratch_database(pg.url(), "t_pgw_rehearsal_drill_sweeper"):
                assert not exists(pg, abandoned)
                assert exists(pg, live)
        finally:
            holder.execute(f"DROP DATABASE IF EXISTS {abandoned}")
            holder.execute(f"DROP DATABASE {live}")
