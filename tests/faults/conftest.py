"""Fixtures of the fault-injection suite: a server whose password is a canary, and the fault recorder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from faults import FAULT_PROPERTY, Injector, canary_password, private_postgres
from pgwarden.testing import localpg


@pytest.fixture(scope="session")
def canary_pg() -> Iterator[localpg.LocalPostgres]:
    """A PostgreSQL server (newest) whose password is a canary: any output that contains it leaks it."""
    with private_postgres(canary_password()) as server:
        yield server


@pytest.fixture
def inject(request: pytest.FixtureRequest) -> Injector:
    """Delivers faults and records them on this test, for the summary by kind."""
    return Injector(request.node)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Faults injected by kind, and how many of the runs they hit did not hold up (failed tests)."""
    injected: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", None) != "call":
                continue
            kinds = [value for name, value in report.user_properties if name == FAULT_PROPERTY]
            injected.update(kinds)
            if outcome == "failed":
                broken.update(kinds)
    if not injected:
        return
    terminalreporter.section("faults injected")
    for kind, count in sorted(injected.items()):
        terminalreporter.write_line(f"{kind:<24} {count:>4} injected, {broken[kind]:>3} in failing tests")
    terminalreporter.write_line(
        f"{'total':<24} {sum(injected.values()):>4} injected, {sum(broken.values()):>3} in failing tests"
    )
