"""How a check's value is compared with `equals`: numbers numerically, booleans whichever way written."""

import psycopg
import pytest

from pgwarden.api.verify import Check
from pgwarden.engine.migrate.verify import run_check


@pytest.mark.parametrize(
    ("query", "equals", "passed"),
    [
        ("SELECT 2::bigint", 2, True),
        ("SELECT 2.0::numeric", 2, True),
        ("SELECT true", True, True),
        ("SELECT true", "true", True),
        ("SELECT false", "true", False),
        ("SELECT 'ready'", "ready", True),
        ("SELECT NULL::int", 0, False),
    ],
)
def test_equals_compares_values_as_a_person_means_them(
    db_url: str, query: str, equals: object, passed: bool
) -> None:
    with psycopg.connect(db_url) as conn:
        result = run_check(conn, Check(name="c", sql=query, equals=equals))  # type: ignore[arg-type]

    assert result.passed is passed
