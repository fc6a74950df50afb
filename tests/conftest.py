"""Shared fixtures: real PostgreSQL servers started by the tests themselves, and fresh databases on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgwarden.testing import localpg


@pytest.fixture(scope="session")
def pg() -> Iterator[localpg.LocalPostgres]:
    """The newest PostgreSQL server on this machine, for this test session (or xdist worker)."""
    with localpg.running(localpg.newest_install()) as server:
        yield server


@pytest.fixture(scope="session")
def pg_oldest() -> Iterator[localpg.LocalPostgres]:
    """The oldest PostgreSQL server on this machine (Debian's), for tests that run on both ends."""
    with localpg.running(localpg.oldest_install()) as server:
        yield server


@pytest.fixture(params=["newest", "oldest"])
def any_pg(request: pytest.FixtureRequest) -> localpg.LocalPostgres:
    """Each of the oldest and newest servers in turn."""
    return request.getfixturevalue("pg" if request.param == "newest" else "pg_oldest")


@pytest.fixture
def db_url(pg: localpg.LocalPostgres) -> str:
    """A fresh, empty database on the newest server; its URL carries the password."""
    return pg.create_database()
