"""Fixtures of the fault-injection suite: a server whose password is a canary, and the fault recorder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgwarden_testing import localpg

from faults import Injector, canary_password, private_postgres


@pytest.fixture(scope="session")
def canary_pg() -> Iterator[localpg.LocalPostgres]:
    """A PostgreSQL server (newest) whose password is a canary: any output that contains it leaks it."""
    with private_postgres(canary_password()) as server:
        yield server


@pytest.fixture
def inject(request: pytest.FixtureRequest) -> Injector:
    """Delivers faults and records them on this test, for the summary by kind."""
    return Injector(request.node)
