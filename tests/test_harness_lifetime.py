"""The harness itself: a test run killed part-way (SIGTERM or SIGKILL to its process group, as CI does)
leaves no PostgreSQL or MinIO running, and the next start sweeps away what it left on disk."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from pgwarden_testing import lifetime

# A test run that starts a PostgreSQL and a MinIO the way the session fixtures do, says where they are,
# and waits to be killed.
HOLDING_RUN = """
import json, os, time
from pathlib import Path
from pgwarden_testing import localpg, s3server

def test_hold() -> None:
    with localpg.running(localpg.newest_install()) as pg, s3server.running() as s3:
        postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        servers = {"postgres": postmaster, "minio": s3.process.pid}
        roots = [str(pg.data_dir.parent), str(s3.data_dir.parent)]
        Path(os.environ["HELD_SERVERS"]).write_text(json.dumps({"servers": servers, "roots": roots}))
        time.sleep(3600)
"""


def start_holding_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, int], list[str]]:
    (tmp_path / "test_hold.py").write_text(HOLDING_RUN)
    said = tmp_path / "held.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "test_hold.py"],
        cwd=tmp_path,
        env={**os.environ, "HELD_SERVERS": str(said)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a process group of its own, to kill as CI kills a job
    )
    deadline = time.monotonic() + 180
    while not said.exists() or not said.read_text():
        if run.poll() is not None or time.monotonic() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            raise AssertionError("the holding run never started its servers")
        time.sleep(0.2)
    held = json.loads(said.read_text())
    return run, held["servers"], held["roots"]


def processes_of(servers: dict[str, int], roots: list[str]) -> list[str]:
    """Every live process of the servers: in a server's session (MinIO), or working in a server's directory
    (a postmaster's children, which each take a session of their own)."""
    alive = []
    for process in psutil.process_iter(["pid", "name", "status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.cwd()
            if os.getsid(process.pid) in servers.values() or any(cwd.startswith(root) for root in roots):
                alive.append(f"{process.info['pid']} {process.info['name']}")
    return alive


@pytest.mark.s3
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_test_run_leaves_no_server_running(tmp_path: Path, signum: signal.Signals) -> None:
    run, servers, roots = start_holding_run(tmp_path)
    before = processes_of(servers, roots)
    assert len(before) > 2, f"the servers (a postmaster with its children, MinIO) should run: {before}"

    os.killpg(run.pid, signum)
    run.wait(timeout=30)
    deadline = time.monotonic() + 15
    while processes_of(servers, roots) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_of(servers, roots)
    for (
        pid
    ) in servers.values():  # never leave them to the next test, whatever the outcome (each leads its group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    assert left == [], f"the killed run's servers ({servers}) are still running: {left}"
    lifetime.sweep()  # the next start's sweep (or another session's) removes their directories
    assert [root for root in roots if Path(root).exists()] == []


# An owner that starts a server without the parent-death guard (as older code did), records it, and dies.
CARELESS_OWNER = """
import signal, subprocess, sys
from pathlib import Path
from pgwarden_testing import lifetime

root = Path(sys.argv[1])
server = subprocess.Popen(
    ["sleep", "3600"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
)
lifetime.record(server, root, signal.SIGTERM)
print(server.pid, flush=True)
"""


def test_the_next_start_sweeps_a_server_whose_owner_died(tmp_path: Path) -> None:
    root = tmp_path / "server-root"
    root.mkdir()
    owner = subprocess.run(
        [sys.executable, "-c", CARELESS_OWNER, str(root)], capture_output=True, text=True, check=True
    )
    server = int(owner.stdout)
    assert psutil.pid_exists(server), "the orphaned server should outlive its owner"

    swept = lifetime.sweep()

    assert any(f"server {server} " in line for line in swept), swept
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE
    assert not root.exists()
