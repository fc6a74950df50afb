"""Shared fixtures: real PostgreSQL servers started by the tests themselves, and fresh databases on them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgwarden_testing import localpg, s3server

MINIO_BUILD = Path(__file__).resolve().parent.parent / "hack" / "build-minio.sh"
_minio_build_error: list[str] = []

# Fixtures that need a binary built from a Go module (MinIO, helm, Kubernetes, Prometheus): `make unit`
# leaves out the tests using them, and every test of tests/cluster.
GO_FIXTURES = {"s3", "private_minio", "helm", "kube", "prometheus_bin"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "go: needs a binary built from a Go module (Kubernetes, MinIO, helm, Prometheus); make unit leaves it out",
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # The s3 marker: parametrized backends ask for MinIO by getfixturevalue, which fixturenames miss.
        uses_go = GO_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("s3")
        if uses_go or "cluster" in item.path.parts:
            item.add_marker(pytest.mark.go)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build MinIO before any test that needs it runs, so a first build (minutes) meets no test timeout, and
    name the binary in the environment, where pgwarden_testing (and the tests' subprocesses) find it."""
    if any(
        "s3" in getattr(item, "fixturenames", ()) or item.get_closest_marker("s3") for item in session.items
    ):
        try:
            s3server.use_build_script(MINIO_BUILD)
        except s3server.S3ServerUnavailable as exc:
            _minio_build_error.append(str(exc))


@pytest.fixture(scope="session")
def s3() -> Iterator[s3server.S3Server]:
    """A real MinIO on 127.0.0.1 for this test session (or xdist worker)."""
    if _minio_build_error:
        pytest.fail(_minio_build_error[0], pytrace=False)
    try:
        with s3server.running() as server:
            yield server
    except s3server.S3ServerUnavailable as error:
        pytest.fail(str(error), pytrace=False)


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


# The fault-injection suite's summary lives here: under xdist only the root conftest reaches the controller.
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Faults injected by kind, and how many of the runs they hit did not hold up (failed tests)."""
    injected: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", None) != "call":
                continue
            kinds = [
                value for name, value in report.user_properties if name == "fault"
            ]  # faults.FAULT_PROPERTY
            injected.update(kinds)
            if outcome == "failed":
                broken.update(kinds)
    _kill_sweep_summary(terminalreporter)
    if not injected:
        return
    terminalreporter.section("faults injected")
    for kind, count in sorted(injected.items()):
        terminalreporter.write_line(f"{kind:<24} {count:>4} injected, {broken[kind]:>3} in failing tests")
    terminalreporter.write_line(
        f"{'total':<24} {sum(injected.values()):>4} injected, {sum(broken.values()):>3} in failing tests"
    )


def _kill_sweep_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The kill sweep's numbers (tests/faults/test_kill_sweep.py): kills by command and point, broken runs,
    the longest time a database was missing or closed after a kill."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name != "kill-sweep":
                    continue
                summary = json.loads(value)
                terminalreporter.section("kill sweep")
                terminalreporter.write_line(
                    f"seed {summary['seed']}: {summary['kills']} kills, {summary['broken']} broke the invariant, "
                    f"longest missing or closed {summary['longestMissingSeconds']}s, {summary['wallSeconds']}s"
                )
                terminalreporter.write_line(f"  longest after: {summary['longestMissingAfter']}")
                for command, count in sorted(summary["byCommand"].items()):
                    terminalreporter.write_line(f"  {command:<16} {count:>4} kills")
                for point, count in summary["byPoint"].items():
                    terminalreporter.write_line(f"    {point:<40} {count:>4}")
