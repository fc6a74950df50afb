"""Named points where a test stops a run to kill or inspect it: inert in the product.

A point does something only when a hook is installed in the running process. Nothing in the wheel or the
image installs one: the test harness does (tests/support/pgwarden_testing/paused.py, a wrapper of the
command line that lives only in the test tree), so no resource, chart value or environment variable of a
production Pod can make a run stop at one.
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[str], None]
_hook: Hook | None = None


def install(hook: Hook | None) -> None:
    """Make every pause point call `hook(name)` (None: inert again). For the test harness only."""
    global _hook
    _hook = hook


def pause_point(name: str) -> None:
    """Tell the installed hook (if any) that the run reached `name`; without one, nothing happens."""
    if _hook is not None:
        _hook(name)
