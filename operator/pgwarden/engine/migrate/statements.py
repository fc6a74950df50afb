"""Which statement of which migration a run is executing, for those who watch it (lock sampling, progress)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RunningStatement:
    """A statement a run sent to the server, and the session (pid) it runs in."""

    version: str
    script: str
    line: int
    text: str
    pid: int
    started: float = field(default_factory=time.monotonic)

    @property
    def where(self) -> str:
        """`file:line`, as findings and errors name a statement."""
        return f"{self.script}:{self.line}"

    @property
    def summary(self) -> str:
        """The start of the statement on one line."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= 80 else flat[:77] + "..."


class StatementObserver(Protocol):
    """Told when each migration statement starts and ends (from the run's thread; must not block it)."""

    def started(self, statement: RunningStatement) -> None: ...

    def finished(self, statement: RunningStatement) -> None: ...
