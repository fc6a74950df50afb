"""Reports that fit and tell no secrets (issue 9, Deliver 7).

The compact report the Job writes to its termination message is at most 4,096 bytes whatever the text in it
(the kubelet truncates longer messages, and the operator then has no report at all); server errors reach
reports with their shape (constraint, columns, table) but not the row values they were about.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import json_report, migrations_dir, run_pgwarden
from pgwarden.engine.postgres.pgerror import describe_error, hide_values_in_detail, hide_values_in_primary
from pgwarden.job.runner import compact

LIMIT = 4096
Report = dict[str, Any]

# Text that costs more bytes than characters, and text that costs more once escaped in JSON.
ALPHABETS = {
    "cyrillic": "Щедрый покупатель ",  # 2 bytes a letter
    "cjk": "数据库迁移失败了",  # 3 bytes a character
    "emoji": "🐘🔥👩‍👩‍👧‍👦",  # 4-byte code points and ZWJ sequences
    "controls": "\x01\x02\x1f\t\n",  # 1 byte each, 6 once escaped as \u0001
    "quotes": '"\\"\\\\',  # 1 byte each, 2 once escaped
    "lone-surrogate": "x\ud800y",  # no UTF-8 at all: must not crash the report
}


def text(alphabet: str, length: int) -> str:
    unit = ALPHABETS[alphabet]
    return (unit * (length // len(unit) + 1))[:length]


def long_error(t: Callable[[int], str]) -> Report:
    return {
        "outcome": "RolledBack",
        "error": {"message": t(6000), "statement": t(3000), "migration": "0002", "line": 1},
        "rollback": {"strategy": "transaction", "outcome": "Succeeded", "message": t(3000)},
    }


def many_checks(t: Callable[[int], str]) -> Report:
    checks = [{"name": t(80), "passed": i % 7 != 3, "actual": t(300), "message": t(500)} for i in range(300)]
    return {"outcome": "RolledBack", "verification": {"passed": False, "checks": checks}}


def many_row_changes(t: Callable[[int], str]) -> Report:
    changes = [{"table": f"{t(31)}.{t(31)}", "before": i, "after": i - 1} for i in range(2000)]
    return {"outcome": "Failed", "rowChanges": changes, "error": {"message": t(200)}}


def everything(t: Callable[[int], str]) -> Report:
    return {
        **long_error(t),
        **many_row_changes(t),
        "verification": many_checks(t)["verification"],
        "applied": [
            {"version": f"{i:04d}", "description": t(60), "checksum": "c" * 64, "durationMs": i}
            for i in range(500)
        ],
        "pending": [t(20) for _ in range(500)],
        "warnings": [t(400) for _ in range(100)],
        "plan": [t(120) for _ in range(500)],
        "drift": {"detected": True, "differences": [{"kind": "t", "object": t(60), "detail": t(300)}] * 200},
        "unexpected": {"nested": [[t(1000)] * 50] * 5, "more": t(20000)},
        "outcome": "RolledBack",
    }


def nothing_but_text(t: Callable[[int], str]) -> Report:
    return {"outcome": t(5000), "error": {"message": t(5000)}, t(3000): t(3000)}


SHAPES: dict[str, Callable[[Callable[[int], str]], Report]] = {
    "long-error": long_error,
    "many-checks": many_checks,
    "many-row-changes": many_row_changes,
    "everything": everything,
    "nothing-but-text": nothing_but_text,
}


@pytest.mark.parametrize("alphabet", list(ALPHABETS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_compact_report_fits_in_4096_bytes_whatever_its_text(shape: str, alphabet: str) -> None:
    report = SHAPES[shape](lambda length: text(alphabet, length))

    message = compact(report)

    encoded = message.encode("utf-8")  # strict: the message is valid UTF-8
    assert len(encoded) <= LIMIT, len(encoded)
    data = json.loads(message)
    assert isinstance(data, dict)
    assert data["outcome"] == report["outcome"] or data["outcome"].endswith("…")
    if "error" in report:
        assert data["error"]["message"], "the reason for the failure must survive"


@pytest.mark.parametrize("alphabet", ["cyrillic", "cjk", "emoji"])
def test_a_long_multi_byte_error_keeps_as_much_of_its_start_as_fits(alphabet: str) -> None:
    report = {"outcome": "Failed", "error": {"message": "migration 0002 failed: " + text(alphabet, 20000)}}

    data = json.loads(compact(report))

    message = data["error"]["message"]
    assert message.startswith("migration 0002 failed: ")
    assert message.endswith("…")
    assert len(message.encode()) > 1000, "a multi-byte message must not be cut to a few characters"


def test_failed_checks_and_totals_survive_capping() -> None:
    report = many_checks(lambda length: text("cyrillic", length))

    data = json.loads(compact(report))

    checks = data["verification"]["checks"]
    assert data["verification"]["checksTotal"] == 300
    assert checks and all(not c["passed"] for c in checks)


def test_a_small_report_is_left_whole() -> None:
    report = {
        "outcome": "Succeeded",
        "currentVersion": "0002",
        "applied": [{"version": "0002", "description": "ёлка 🎄", "checksum": "c" * 64, "durationMs": 3}],
        "rollback": None,
    }

    assert json.loads(compact(report)) == report


# --- server errors: the shape stays, the values go --------------------------------------------------

ROW_VALUES = ("alice@example.com", "Щедрый", "42424242", "secret-note")


@pytest.fixture
def errors_of(any_pg: LocalPostgres) -> Callable[[str], psycopg.Error]:
    """Runs a statement on a database with a few constrained tables and returns the error it raised."""
    url = any_pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE, note text CHECK (note <> 'secret-note'),"
            " age int NOT NULL DEFAULT 1);"
            "CREATE TABLE orders (person int REFERENCES people);"
            "CREATE TABLE rooms (booked int4range, EXCLUDE USING gist (booked WITH &&));"
            "INSERT INTO people VALUES (1, 'alice@example.com', 'Щедрый', 1), (7, 'x@example.com', 'x', 1);"
            "INSERT INTO orders VALUES (7);"
            "INSERT INTO rooms VALUES ('[1,10)');"
            "CREATE TYPE mood AS ENUM ('ok')"
        )

    def error_of(statement: str) -> psycopg.Error:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute(statement)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                return exc
        raise AssertionError(f"{statement!r} did not fail")

    return error_of


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "INSERT INTO people VALUES (2, 'alice@example.com', 'x', 1)",
            'duplicate key value violates unique constraint "people_email_key" (Key (email)=(…) already exists.)',
        ),
        (
            "INSERT INTO people VALUES (3, 'bob@example.com', 'secret-note', 1)",
            'new row for relation "people" violates check constraint "people_note_check" (Failing row contains (…).)',
        ),
        (
            "INSERT INTO people VALUES (4, 'carol@example.com', 'Щедрый', NULL)",
            'null value in column "age" of relation "people" violates not-null constraint'
            " (Failing row contains (…).)",
        ),
        (
            "INSERT INTO orders VALUES (42424242)",
            'insert or update on table "orders" violates foreign key constraint "orders_person_fkey"'
            ' (Key (person)=(…) is not present in table "people".)',
        ),
        (
            "INSERT INTO rooms VALUES ('[5,42424242)')",
            'conflicting key value violates exclusion constraint "rooms_booked_excl"'
            " (Key (booked)=(…) conflicts with existing key (booked)=(…).)",
        ),
        (
            "INSERT INTO people (id, email) SELECT 9, email FROM people",
            'duplicate key value violates unique constraint "people_email_key" (Key (email)=(…) already exists.)',
        ),
        ("SELECT email::int FROM people", 'invalid input syntax for type integer: "…"'),
        ("SELECT note::mood FROM people", 'invalid input value for enum mood: "…"'),
        (
            "SELECT ('{' || email)::json FROM people",
            'invalid input syntax for type json (Token "…" is invalid.)',
        ),
        (
            "CREATE TABLE copy AS SELECT email FROM people UNION ALL SELECT email FROM people;"
            " CREATE UNIQUE INDEX copy_email ON copy (email)",
            'could not create unique index "copy_email" (Key (email)=(…) is duplicated.)',
        ),
    ],
)
def test_a_server_error_keeps_its_shape_and_loses_its_values(
    errors_of: Callable[[str], psycopg.Error], statement: str, expected: str
) -> None:
    described = describe_error(errors_of(statement))

    assert described == expected
    for value in ROW_VALUES:
        assert value not in described


def test_a_row_still_referenced_is_named_without_its_key(errors_of: Callable[[str], psycopg.Error]) -> None:
    described = describe_error(errors_of("DELETE FROM people WHERE id = 7"))

    assert described == (
        'update or delete on table "people" violates foreign key constraint "orders_person_fkey" on table "orders"'
        ' (Key (id)=(…) is still referenced from table "orders".)'
    )


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("Key (lower(email))=(alice@example.com) already exists.", "Key (lower(email))=(…) already exists."),
        ("Key (a, b)=(1, 2) already exists.", "Key (a, b)=(…) already exists."),
        ("Key (a)=(x) conflicts with key (a)=(y).", "Key (a)=(…) conflicts with key (a)=(…)."),
        # A value that imitates the sentence around it hides everything from the first value on.
        ("Key (a)=(x) already exists.) and (y", "Key (a)=(…)"),
        ("Failing row contains (1, alice) already exists.", "Failing row contains (…)."),
        (
            "Partition key of the failing row contains (region) = (eu-west).",
            "Partition key of the failing row contains (region) = (…)",
        ),
        # A translated key detail (lc_messages=de): the values go even where the sentence is unknown.
        (
            "Schlüssel »(email)=(alice@example.com)« existiert bereits.",
            "Schlüssel »(email)=(…)« existiert bereits.",
        ),
        (
            'There is an entry for table "people", but it cannot be referenced here.',
            'There is an entry for table "people", but it cannot be referenced here.',
        ),
    ],
)
def test_details_lose_their_values(detail: str, expected: str) -> None:
    assert hide_values_in_detail(detail) == expected


@pytest.mark.parametrize(
    ("primary", "expected"),
    [
        ('invalid input syntax for type uuid: "alice"', 'invalid input syntax for type uuid: "…"'),
        (
            'value "42424242424" is out of range for type integer',
            'value "…" is out of range for type integer',
        ),
        ('date/time field value out of range: "2024-13-45"', 'date/time field value out of range: "…"'),
        ('relation "people" does not exist', 'relation "people" does not exist'),
    ],
)
def test_primary_messages_lose_a_quoted_value_and_keep_names(primary: str, expected: str) -> None:
    assert hide_values_in_primary(primary) == expected


def test_a_migration_that_breaks_a_unique_key_reports_no_row_value(db_url: str, tmp_path: Path) -> None:
    directory = migrations_dir(
        tmp_path / "m",
        extra={
            "0001_people.sql": "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE);\n",
            "0002_seed.sql": "INSERT INTO people VALUES (1, 'alice@example.com'), (2, 'alice@example.com');\n",
        },
    )

    runs = [
        run_pgwarden("migrate", db_url, "--dir", directory, "--json"),
        run_pgwarden("-v", "migrate", db_url, "--dir", directory),
    ]

    # The failing statement is the user's own SQL and is shown as written; the server's words about the
    # rows it hit (`Key (email)=(alice@example.com) already exists`) are not.
    for result in runs:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "=(alice@example.com)" not in result.stdout + result.stderr
    report = json_report(runs[0])
    assert report["outcome"] == "RolledBack"
    assert "people_email_key" in report["error"]["message"]
    assert "alice@example.com" not in report["error"]["message"]


def test_a_migration_that_breaks_a_unique_key_names_the_column_it_broke(db_url: str, tmp_path: Path) -> None:
    directory = migrations_dir(
        tmp_path / "m",
        extra={
            "0001_people.sql": "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE);\n",
            "0002_seed.sql": "INSERT INTO people VALUES (1, 'alice@example.com'), (2, 'alice@example.com');\n",
        },
    )

    result = run_pgwarden("migrate", db_url, "--dir", directory, "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "(Key (email)=(…) already exists.)" in json_report(result)["error"]["message"]
