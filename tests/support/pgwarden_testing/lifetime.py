"""Throwaway servers live no longer than the process that started them.

Two guards, because a CI run killed part-way (SIGTERM or SIGKILL to its process group) runs no teardown:
- a parent-death signal (prctl PR_SET_PDEATHSIG) set in the server's process before it runs, so the kernel
  stops the server the moment its starter dies, however it dies;
- a record per server in a shared directory (who started it, its pid and temporary directory), swept at
  the next start: a server whose starter is gone is stopped and its directory removed. This catches what
  the first guard cannot (a starter thread that ended early, a server started by older code).

The parent-death signal follows the *thread* that started the server: start servers from the main thread
(pytest fixtures, benches and scripts do).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REGISTRY = Path(tempfile.gettempdir()) / "pgwarden-test-servers"
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: signal.Signals) -> Callable[[], None]:
    """A `preexec_fn` for Popen: the child gets `signum` when this process's starting thread dies.

    If this process is already gone by the time the child sets it (the race prctl documents), the child
    exits at once instead of living on as an orphan."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)

    return preexec


def _started_at(pid: int) -> float | None:
    """When process `pid` started (None: it is gone), to tell it from a later process given the same pid."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def record(process: subprocess.Popen[bytes], root: Path, stop_signal: signal.Signals) -> None:
    """Note that this process owns `process` and its directory `root`, for a later sweep."""
    REGISTRY.mkdir(mode=0o700, exist_ok=True)
    entry = {
        "owner": os.getpid(),
        "ownerStarted": _started_at(os.getpid()),
        "server": process.pid,
        "serverStarted": _started_at(process.pid),
        "root": str(root),
        "stopSignal": int(stop_signal),
    }
    (REGISTRY / f"{process.pid}.json").write_text(json.dumps(entry))


def forget(process: subprocess.Popen[bytes]) -> None:
    """The server was stopped (or is about to be) by its owner: nothing to sweep."""
    with contextlib.suppress(FileNotFoundError):
        (REGISTRY / f"{process.pid}.json").unlink()


def sweep() -> list[str]:
    """Stop every recorded server whose owner is gone and remove its directory; says what it did."""
    swept = []
    for path in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written, or removed meanwhile by another sweep
        started = entry["ownerStarted"]
        if started is not None and _started_at(entry["owner"]) == started:
            continue  # its owner still runs
        if entry["serverStarted"] is not None and _started_at(entry["server"]) == entry["serverStarted"]:
            _stop(entry["server"], signal.Signals(entry["stopSignal"]))
        shutil.rmtree(entry["root"], ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        swept.append(f"server {entry['server']} of dead owner {entry['owner']}: {entry['root']}")
    return swept


def _stop(pid: int, signum: signal.Signals, grace: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return  # its parent (not us) reaps it
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
