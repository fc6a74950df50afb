"""Killing a process tree as a container's death does: every process at once, whatever session it is in."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The fields after the command name, which may itself hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def kill_process_tree(pid: int) -> int:
    """Stop the whole tree first (so nothing forks or cleans up meanwhile), then SIGKILL every process of it
    (its own process group's, and those in sessions of their own, like scratch guardians); how many."""
    stopped: set[int] = set()
    while True:  # until no new descendant appears between two looks
        tree = set(process_tree(pid))
        for member in tree - stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGSTOP)
        if tree <= stopped:
            break
        stopped |= tree
    for member in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    return len(stopped)
