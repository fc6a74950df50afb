"""`pgwarden backup --verify` restores into a scratch database `pgwarden_verify_<id>`; killed with SIGKILL
half-way through that restore, it used to leave the database behind. Its guardian drops it now (issue 13)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
from helpers import clean_env, execute, pause_env, pgwarden_command
from pgwarden_testing.localpg import LocalPostgres

# About 40 MB of dump: enough for the restore to pass the "restore-mid-stream" pause point (20 MB).
BULK = """
CREATE TABLE bulk (id int, a text, b text);
INSERT INTO bulk SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 13)::text)
FROM generate_series(1, 300000) g;
"""


def verify_databases(pg: LocalPostgres) -> set[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgwarden\\_verify\\_%'")
        return {str(r[0]) for r in rows.fetchall()}


def test_sigkill_during_the_verification_restore_leaves_no_scratch_database(
    pg: LocalPostgres, db_url: str, tmp_path: Path
) -> None:
    execute(db_url, BULK)
    before = verify_databases(pg)
    run = subprocess.Popen(
        [
            *pgwarden_command("restore-mid-stream"),
            "backup",
            db_url,
            "--to",
            str(tmp_path / "backups"),
            "--verify",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(pause_env("restore-mid-stream")),
        start_new_session=True,  # its process group is ours to clean up (pg_restore), and only it
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any("paused at restore-mid-stream" in line for line in lines):
        assert run.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    assert len(verify_databases(pg) - before) == 1

    os.kill(run.pid, signal.SIGKILL)  # pgwarden itself, as the OOM killer would
    run.wait(timeout=30)
    with_children_gone = time.monotonic() + 30
    while verify_databases(pg) - before and time.monotonic() < with_children_gone:
        time.sleep(0.1)

    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGKILL)  # an orphaned pg_restore of this run, if any
    assert verify_databases(pg) - before == set(), "the verification's scratch database outlived its run"
