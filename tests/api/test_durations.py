"""One duration grammar: the same text means the same (or is refused alike) in a resource's CRD pattern, its
model, a command-line flag and the engine, which hands PostgreSQL milliseconds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from pgwarden.api.crd import KINDS, crd
from pgwarden.api.durations import DURATION_PATTERN, format_duration, milliseconds, parse_duration
from pgwarden.api.policy import MigrationPolicy
from pgwarden.cli.output import duration_flag
from pgwarden.engine.backup.locks import lock_wait_option
from pgwarden.engine.migrate.timeouts import postgres_timeout
from pgwarden.errors import BadInput

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000

DURATIONS = [
    ("0", 0),
    ("0s", 0),
    ("500ms", 500),
    ("30s", 30 * SECOND),
    ("90s", 90 * SECOND),
    ("5m", 5 * MINUTE),
    ("1m30s", 90 * SECOND),
    ("1h30m", 90 * MINUTE),
    ("12h", 12 * HOUR),
    ("7d", 7 * DAY),
    ("2w", 14 * DAY),
    ("1d2h3m4s5ms", DAY + 2 * HOUR + 3 * MINUTE + 4 * SECOND + 5),
    (" 7d ", 7 * DAY),  # a flag or a file may carry spaces around it
]

NOT_DURATIONS = [
    "",
    "7",
    "2500",
    "d",
    "7 d",
    "5 minutes",
    "-1h",
    "1.5h",
    "30m1h",  # out of order: it passed the old CRD pattern and reached PostgreSQL unconverted
    "1h1h",
    "10min",
    "1y",
    "soon",
]


@pytest.mark.parametrize(("text", "ms"), DURATIONS)
def test_a_duration_is_whole_numbers_with_units_largest_first(text: str, ms: int) -> None:
    assert milliseconds(text) == ms
    assert parse_duration(text) == timedelta(milliseconds=ms)


@pytest.mark.parametrize("text", NOT_DURATIONS)
def test_anything_else_is_refused_with_the_forms_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration.*e\.g\. 500ms, 30s, 5m, 1h30m, 7d or 2w"):
        milliseconds(text)


def duration_fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of a spec's schema whose name says it holds a duration."""
    for name, node in (schema.get("properties") or {}).items():
        if re.search(r"(Timeout|Age|After|Hold)$", name) and node.get("type") == "string":
            yield f"{path}.{name}", node
        yield from duration_fields(node, f"{path}.{name}")
        yield from duration_fields(node.get("items") or {}, f"{path}.{name}[]")


def all_duration_fields() -> dict[str, dict[str, Any]]:
    found = {}
    for kind in KINDS:
        spec = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        found.update({f"{kind.kind}.spec{path}": node for path, node in duration_fields(spec)})
    return found


def test_every_duration_field_is_checked_at_kubectl_apply_with_the_one_pattern() -> None:
    fields = all_duration_fields()
    assert {
        "DatabaseMigration.spec.policy.lockTimeout",
        "DatabaseMigration.spec.policy.statementTimeout",
        "DatabaseMigration.spec.rehearsal.maxLockHold",
        "DatabaseBackup.spec.retention.maxAge",
        "DatabaseBackup.spec.staleAfter",
        "DatabaseBackup.spec.verify.staleAfter",
        "DatabaseBackup.spec.lockWaitTimeout",
    } <= set(fields)
    for path, node in fields.items():
        assert node.get("pattern") == DURATION_PATTERN and node.get("minLength") == 1, path


@pytest.mark.parametrize(("text", "ms"), [*DURATIONS, *((text, None) for text in NOT_DURATIONS)])
def test_the_same_text_means_the_same_everywhere(text: str, ms: int | None) -> None:
    """The CRD's pattern (what `kubectl apply` admits), the model, a flag and the engine agree."""
    admitted = bool(text) and re.fullmatch(DURATION_PATTERN, text) is not None
    assert admitted == (ms is not None and text == text.strip())
    if ms is None:
        with pytest.raises(ValidationError, match=r"lock_timeout|lockTimeout"):
            MigrationPolicy(lock_timeout=text)
        with pytest.raises(BadInput, match=r"--lock-timeout: .* is not a duration"):
            duration_flag("--lock-timeout", text)
        with pytest.raises(BadInput, match="not a duration"):
            postgres_timeout("lock_timeout", text)
        with pytest.raises(BadInput, match="not a duration"):
            lock_wait_option(text)
        return
    assert duration_flag("--lock-timeout", text) == text.strip()
    assert postgres_timeout("lock_timeout", text) == str(ms), "PostgreSQL is handed milliseconds"
    assert lock_wait_option(text) == ([f"--lock-wait-timeout={ms}"] if ms else [])
    if admitted:
        assert MigrationPolicy(lock_timeout=text).lock_timeout == text


def test_a_timeout_postgresql_cannot_hold_is_refused_before_the_run() -> None:
    assert postgres_timeout("statement_timeout", "24d") == str(24 * DAY)
    with pytest.raises(BadInput, match="longer than PostgreSQL allows"):
        postgres_timeout("statement_timeout", "25d")


@pytest.mark.parametrize(
    ("span", "written"),
    [(timedelta(0), "0s"), (timedelta(seconds=10), "10s"), (timedelta(minutes=30), "30m"),
     (timedelta(seconds=93784), "1d2h3m4s")],
)  # fmt: skip
def test_durations_in_messages_are_written_in_the_grammar(span: timedelta, written: str) -> None:
    assert format_duration(span) == written
    assert parse_duration(written) == span
