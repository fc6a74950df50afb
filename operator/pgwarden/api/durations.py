"""Durations: one grammar for every duration pgwarden reads, so the same text means the same everywhere.

Resource fields use it through `Duration` (the CRD pattern is generated from it, so `kubectl apply` refuses
what the engine would), every command-line flag through `pgwarden.cli.output.duration_flag`, and the engine through
`milliseconds`: PostgreSQL is handed a number of milliseconds, never the user's text.

A duration is `0`, or whole numbers each with a unit, from the largest unit to the smallest and each unit at
most once: `w` (weeks), `d`, `h`, `m` (minutes), `s`, `ms`. So `2w`, `7d`, `1h30m`, `90s`, `1m30s` and
`500ms` are durations; `30m1h` (out of order), `10min`, `1.5h`, `90` (no unit) and `-1h` are not.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field

# Largest first: the order a duration is written in.
UNITS_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
DURATION_PATTERN = "^(0|" + "".join(f"([0-9]+{unit})?" for unit in UNITS_MS) + ")$"
EXAMPLES = "500ms, 30s, 5m, 1h30m, 7d or 2w"
_PART = re.compile(r"([0-9]+)(ms|w|d|h|m|s)")

# A duration field of a resource: the CRD carries the same pattern (an empty string fails minLength).
Duration = Annotated[str, Field(min_length=1, max_length=32, pattern=DURATION_PATTERN)]


def milliseconds(text: str) -> int:
    """The duration in milliseconds; ValueError saying what a duration looks like otherwise."""
    written = text.strip()
    if not written or not re.fullmatch(DURATION_PATTERN, written):
        raise ValueError(
            f"{text!r} is not a duration; write whole numbers with units from w, d, h, m, s and ms, largest "
            f"first, e.g. {EXAMPLES}"
        )
    return sum(int(amount) * UNITS_MS[unit] for amount, unit in _PART.findall(written))


def parse_duration(text: str) -> timedelta:
    """The duration as a timedelta; ValueError saying what a duration looks like otherwise."""
    return timedelta(milliseconds=milliseconds(text))


def format_duration(span: timedelta | None) -> str:
    """A span written in the grammar, to the second (`1d2h`, `30m`, `0s`), as a resource would say it."""
    seconds = int(span.total_seconds()) if span else 0
    parts = []
    for unit in ("d", "h", "m", "s"):
        amount, seconds = divmod(seconds, UNITS_MS[unit] // 1000)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
