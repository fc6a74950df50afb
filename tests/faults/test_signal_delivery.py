"""SIGTERM reaches the main thread even while it waits in a long read (issue 26).

The kernel gives a process-directed signal to any thread that does not block it; Python runs the handler
only in the main thread, at its next bytecode. So a SIGTERM that a helper thread takes (pg_dump's stderr
reader, the upload thread, a zstd worker) waits as long as the main thread's read: a stalled pg_dump, a
long statement. The kernel prefers the main thread when it is idle, but not when it is busy at that
instant; the tests make it busy on purpose, by holding the main thread in a ptrace stop while the signal
arrives, and release it a moment later.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres
from pgwarden_testing.s3server import S3Server

from cli.helpers import migrations_dir
from faults import GRACE, Activity, Injector, Pgwarden, hold_lock, json_report, s3_place

# After the signal the run must roll back and report within this long (a second or two; a loaded machine).
PROMPT = 3.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PTRACE_SEIZE, _PTRACE_INTERRUPT, _PTRACE_DETACH = 0x4206, 0x4207, 17
_WALL = 0x40000000


def blocked_signals(status: Path) -> set[signal.Signals]:
    """The signals a thread blocks, from its /proc status file (SigBlk: a hex mask, bit n-1 for signal n)."""
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    mask = int(fields["SigBlk"], 16)
    return {signum for signum in signal.Signals if mask & (1 << (signum - 1))}


def threads_that_take(pid: int, signum: signal.Signals) -> list[str]:
    """The helper threads (every thread but the main one) of `pid` that do not block `signum`, by name."""
    takers = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if int(task.name) != pid and signum not in blocked_signals(task / "status"):
                takers.append((task / "comm").read_text().strip())
    return takers


def helper_threads(pid: int) -> list[str]:
    return [
        (task / "comm").read_text().strip()
        for task in Path(f"/proc/{pid}/task").iterdir()
        if int(task.name) != pid
    ]


@contextlib.contextmanager
def main_thread_busy(pid: int) -> Iterator[None]:
    """Hold the main thread of `pid` in a ptrace stop for the block: to the kernel it is busy, as a main
    thread is when it runs or has a signal of its own pending, so a signal sent now goes to another thread
    if any will take it. Released (and its interrupted read resumed) when the block ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    for request in (_PTRACE_SEIZE, _PTRACE_INTERRUPT):
        if libc.ptrace(request, pid, None, None) != 0:
            raise OSError(ctypes.get_errno(), f"ptrace request {request:#x} on {pid}")
    os.waitpid(pid, _WALL)
    try:
        yield
    finally:
        libc.ptrace(_PTRACE_DETACH, pid, None, None)


def sigterm_while_the_main_thread_is_busy(run: Pgwarden, inject: Injector) -> float:
    """Send SIGTERM while the main thread is held; release it; seconds from the release to the run's end."""
    inject.record("SIGTERM while the main thread is busy")
    with main_thread_busy(run.process.pid):
        run.send(signal.SIGTERM)
        time.sleep(0.2)  # the kernel has picked a thread by now
    released = time.monotonic()
    with contextlib.suppress(AssertionError):  # the test below says what went wrong
        run.finish(timeout=GRACE)
    return time.monotonic() - released


def test_sigterm_during_a_long_statement_rolls_back_and_reports_at_once(
    canary_pg: LocalPostgres, tmp_path: Path, inject: Injector
) -> None:
    url = canary_pg.create_database()
    files = {"0001_slow.sql": "CREATE TABLE slow (id int);\nSELECT pg_sleep(600);\n"}
    directory = migrations_dir(tmp_path / "migrations", extra=files)
    with Activity(url) as activity, Pgwarden("migrate", url, "--dir", directory, "--json") as run:
        run.wait_until(activity.running("pg_sleep"), "the long statement")
        assert helper_threads(run.process.pid), "no helper thread runs beside the statement: nothing to test"
        took = sigterm_while_the_main_thread_is_busy(run, inject)
        result = run.finish(timeout=1)

    assert took < PROMPT, f"the run ended {took:.1f}s after SIGTERM"
    assert result.returncode == 1, result.stderr
    report = json_report(result)
    assert report["outcome"] == "RolledBack", report
    assert "SIGTERM" in report["error"]["message"], report
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('slow')").fetchone() == (None,), "the table survived"


def test_sigterm_while_pg_dump_stalls_ends_the_backup_and_its_upload_at_once(
    canary_pg: LocalPostgres, s3: S3Server, inject: Injector
) -> None:
    url = canary_pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE early (a text); CREATE TABLE late (a text)")
        conn.execute("INSERT INTO early SELECT md5(g::text) FROM generate_series(1, 100000) g")
    place = s3_place(s3)
    env = {**place.env, "PGWARDEN_COMPRESSION_THREADS": "2"}
    with (
        Activity(url) as activity,
        hold_lock(url, "late"),  # pg_dump waits for it at the start: its main-thread reader with it
        Pgwarden("backup", url, "--to", place.uri, "--json", env=env) as run,
    ):
        run.wait_until(activity.running("", application=None, waiting_on_lock=True), "pg_dump waiting")
        took = sigterm_while_the_main_thread_is_busy(run, inject)
        result = run.finish(timeout=1)

    assert took < PROMPT, f"the run ended {took:.1f}s after SIGTERM"
    assert result.returncode == 143, result.stderr
    assert "SIGTERM" in json_report(result)["error"]["message"]
    assert place.listed() == [] and place.pending() == [], "the stopped backup left something behind"


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_no_helper_thread_of_a_backup_takes_sigterm_or_sigint(
    canary_pg: LocalPostgres, s3: S3Server, compression: str
) -> None:
    """pg_dump's stderr reader, the count and upload threads and the compressor's workers all block both."""
    url = canary_pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk AS SELECT md5(g::text) || md5((g * 7)::text) AS a, md5((g * 13)::text) AS b"
            " FROM generate_series(1, 800000) g"
        )
    place = s3_place(s3)
    env = {**place.env, "PGWARDEN_COMPRESSION_THREADS": "2"}
    flags = ["--compress", compression, "--json"]
    with Pgwarden("backup", url, "--to", place.uri, *flags, env=env, pause_at="mid-stream") as run:
        run.wait_until(run.stderr_says("paused at mid-stream"), "the middle of the stream")
        helpers = helper_threads(run.process.pid)
        takers = {signum.name: threads_that_take(run.process.pid, signum) for signum in STOP_SIGNALS}
        main_blocks = blocked_signals(Path(f"/proc/{run.process.pid}/status")) & STOP_SIGNALS

    assert len(helpers) >= 3, f"expected the reader, upload and compressor threads, found {helpers}"
    assert takers == {"SIGTERM": [], "SIGINT": []}, takers
    assert not main_blocks, "the main thread must keep taking SIGTERM and SIGINT"
