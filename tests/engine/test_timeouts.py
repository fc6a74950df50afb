"""Timeouts written the Kubernetes way (`10m`) or PostgreSQL's (`10min`) both reach the server correctly."""

import pytest

from pgwarden.engine.migrate.timeouts import postgres_timeout


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("5s", "5000ms"),
        ("10m", "600000ms"),
        ("1h30m", "5400000ms"),
        ("1d", "86400000ms"),
        ("500ms", "500ms"),
        ("10min", "10min"),
        ("0", "0"),
        ("2500", "2500"),
    ],
)
def test_timeouts_are_sent_as_postgresql_reads_them(written: str, sent: str) -> None:
    assert postgres_timeout(written) == sent
