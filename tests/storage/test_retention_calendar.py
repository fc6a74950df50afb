"""Calendar retention (keepDaily, keepWeekly, keepMonthly, keepYearly) as a pure planner, table by table:
which backups each rule keeps, on which time zone's calendar, across daylight-saving changes and months
without a backup, and the rule every decision names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pgwarden.storage.retention import BackupRecord, PrunePlan, RetentionPolicy, plan_prune

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def backups(*times: str, verified: tuple[str, ...] = ()) -> list[BackupRecord]:
    """Backups named by when they completed (UTC), so a table reads as a timeline."""
    return [BackupRecord(t, at(t), verified=t in verified) for t in times]


def plan(records: list[BackupRecord], **rules: object) -> PrunePlan:
    newest = max(r.completed_at for r in records)
    return plan_prune(records, [], RetentionPolicy(**rules), newest + timedelta(minutes=5))  # type: ignore[arg-type]


def kept(result: PrunePlan) -> list[str]:
    return [d.id for d in result.keep]


CASES = [
    pytest.param(
        backups(
            "2026-03-10T02:00", "2026-03-10T14:00", "2026-03-11T02:00", "2026-03-11T14:00", "2026-03-12T02:00"
        ),
        {"keep_daily": 2},
        ["2026-03-12T02:00", "2026-03-11T14:00"],
        id="keepDaily keeps the newest of each of the N newest days",
    ),
    pytest.param(
        backups("2026-03-01T02:00", "2026-03-05T02:00", "2026-03-12T02:00", "2026-03-20T02:00"),
        {"keep_daily": 3},
        ["2026-03-20T02:00", "2026-03-12T02:00", "2026-03-05T02:00"],
        id="keepDaily counts days that have a backup, not calendar days",
    ),
    pytest.param(
        backups("2025-12-27T10:00", "2025-12-28T10:00", "2025-12-29T10:00", "2026-01-02T10:00"),
        {"keep_weekly": 2},
        ["2026-01-02T10:00", "2025-12-28T10:00"],
        id="keepWeekly uses ISO weeks: 29 Dec 2025 and 2 Jan 2026 are both 2026-W01",
    ),
    pytest.param(
        backups(
            "2026-01-05T02:00", "2026-01-25T02:00", "2026-02-10T02:00", "2026-04-03T02:00", "2026-04-20T02:00"
        ),
        {"keep_monthly": 3},
        ["2026-04-20T02:00", "2026-02-10T02:00", "2026-01-25T02:00"],
        id="a month with no backup (March) costs no slot: keepMonthly 3 reaches back to January",
    ),
    pytest.param(
        backups(
            "2023-06-01T02:00", "2024-02-01T02:00", "2024-11-01T02:00", "2025-03-01T02:00", "2026-01-01T02:00"
        ),
        {"keep_yearly": 3},
        ["2026-01-01T02:00", "2025-03-01T02:00", "2024-11-01T02:00"],
        id="keepYearly keeps the newest of each of the N newest years",
    ),
    pytest.param(
        backups("2026-03-28T22:30", "2026-03-29T21:00", "2026-03-29T22:30"),
        {"keep_daily": 3},
        ["2026-03-29T22:30", "2026-03-28T22:30"],
        id="UTC: 21:00 and 22:30 on 29 March are one day",
    ),
    pytest.param(
        backups("2026-03-28T22:30", "2026-03-29T21:00", "2026-03-29T22:30"),
        {"keep_daily": 3, "time_zone": BERLIN},
        ["2026-03-29T22:30", "2026-03-29T21:00", "2026-03-28T22:30"],
        id="Berlin on the spring-forward Sunday: 23:00 CEST on the 29th and 00:30 CEST on the 30th are two days",
    ),
    pytest.param(
        backups("2026-03-28T22:30", "2026-03-29T21:00", "2026-03-29T22:30"),
        {"keep_daily": 2, "time_zone": BERLIN},
        ["2026-03-29T22:30", "2026-03-29T21:00"],
        id="Berlin spring forward, keepDaily 2: the two newest local days",
    ),
    pytest.param(
        backups("2026-10-24T20:00", "2026-10-25T00:30", "2026-10-25T01:30", "2026-10-26T10:00"),
        {"keep_daily": 3, "time_zone": BERLIN},
        ["2026-10-26T10:00", "2026-10-25T01:30", "2026-10-24T20:00"],
        id="Berlin fall back: 02:30 CEST and 02:30 CET are one day (the 25th), the later one kept",
    ),
    pytest.param(
        backups("2026-01-31T12:00", "2026-01-31T23:30", "2026-02-20T12:00"),
        {"keep_monthly": 2, "time_zone": BERLIN},
        ["2026-02-20T12:00", "2026-01-31T12:00"],
        id="Berlin: 23:30 UTC on 31 January is 1 February, so January's newest is the noon backup",
    ),
    pytest.param(
        backups("2026-01-31T12:00", "2026-01-31T23:30", "2026-02-20T12:00"),
        {"keep_monthly": 2},
        ["2026-02-20T12:00", "2026-01-31T23:30"],
        id="UTC: 23:30 on 31 January is still January",
    ),
    pytest.param(
        backups("2026-11-01T04:30", "2026-11-01T05:30", "2026-11-01T06:30", "2026-11-02T12:00"),
        {"keep_daily": 2, "time_zone": NEW_YORK},
        ["2026-11-02T12:00", "2026-11-01T06:30"],
        id="New York fall back: 00:30 EDT, 01:30 EDT and 01:30 EST of 1 November are one day",
    ),
]


@pytest.mark.parametrize(("records", "rules", "expected"), CASES)
def test_calendar_rules_keep_the_newest_backup_of_each_recent_period(
    records: list[BackupRecord], rules: dict[str, object], expected: list[str]
) -> None:
    result = plan(records, **rules)
    assert kept(result) == expected
    assert sorted(d.id for d in result.delete) == sorted({r.id for r in records} - set(expected))


def test_grandfather_father_son_over_a_year_of_daily_backups() -> None:
    """One backup a day at 01:00 Berlin time for a year: 7 dailies, 4 weeklies, 12 monthlies, 2 yearlies."""
    start = datetime(2025, 3, 1, 1, 0, tzinfo=BERLIN)
    records = [
        BackupRecord(f"d{day:03d}", (start + timedelta(days=day)).astimezone(UTC)) for day in range(400)
    ]
    now = records[-1].completed_at + timedelta(hours=1)
    policy = RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2, time_zone=BERLIN)
    result = plan_prune(records, [], policy, now)
    local = {
        d.id: next(r for r in records if r.id == d.id).completed_at.astimezone(BERLIN) for d in result.keep
    }
    rules = {d.id: d.rules for d in result.keep}
    daily = sorted((i for i in rules if "keepDaily" in rules[i]), reverse=True)
    assert daily == [f"d{day:03d}" for day in range(399, 392, -1)]
    weekly = [i for i in rules if "keepWeekly" in rules[i]]
    assert len(weekly) == 4 and all(local[i].isoweekday() == 7 or i == "d399" for i in weekly)
    monthly = [i for i in rules if "keepMonthly" in rules[i]]
    assert len(monthly) == 12
    assert all((local[i] + timedelta(days=1)).day == 1 or i == "d399" for i in monthly)
    yearly = [i for i in rules if "keepYearly" in rules[i]]
    assert [local[i].date().isoformat() for i in yearly] == ["2026-04-04", "2025-12-31"]
    # Every backup kept at 01:00 local time, whatever the offset that day (CET or CEST).
    assert {t.hour for t in local.values()} == {1}
    assert len(result.keep) + len(result.delete) == 400
    assert len(result.keep) == len(set(daily) | set(weekly) | set(monthly) | set(yearly))


def test_every_kept_backup_names_every_rule_that_keeps_it() -> None:
    records = backups("2026-01-31T02:00", "2026-02-27T02:00", "2026-02-28T02:00", "2026-03-01T02:00")
    result = plan(records, keep_daily=2, keep_monthly=2, keep_last=1)
    decisions = {d.id: d for d in result.keep}
    assert decisions["2026-03-01T02:00"].rules == ("newestComplete", "keepLast", "keepDaily", "keepMonthly")
    assert decisions["2026-03-01T02:00"].reason == (
        "newest complete backup; among the 1 newest; newest of day 2026-03-01; newest of month 2026-03"
    )
    assert decisions["2026-02-28T02:00"].rules == ("keepDaily", "keepMonthly")
    assert decisions["2026-02-28T02:00"].reason == "newest of day 2026-02-28; newest of month 2026-02"
    deleted = {d.id: d for d in result.delete}
    assert set(deleted) == {"2026-02-27T02:00", "2026-01-31T02:00"}
    assert deleted["2026-02-27T02:00"].rules == ()
    assert deleted["2026-02-27T02:00"].reason == (
        "not among the 1 newest and keepDaily 2: day 2026-02-27 is older than the 2 newest days with a "
        "backup and keepMonthly 2: month 2026-02 has a newer backup"
    )


def test_the_newest_verified_backup_outlives_the_calendar() -> None:
    records = backups(
        "2025-06-01T02:00", "2026-03-01T02:00", "2026-03-02T02:00", verified=("2025-06-01T02:00",)
    )
    result = plan(records, keep_daily=1)
    assert {d.id: d.rules for d in result.keep} == {
        "2026-03-02T02:00": ("newestComplete", "keepDaily"),
        "2025-06-01T02:00": ("newestVerified",),
    }


def test_max_age_and_calendar_rules_keep_their_union() -> None:
    records = backups("2026-01-10T02:00", "2026-02-10T02:00", "2026-03-09T02:00", "2026-03-10T02:00")
    result = plan(records, keep_monthly=2, max_age=timedelta(days=3))
    assert {d.id: d.rules for d in result.keep} == {
        "2026-03-10T02:00": ("newestComplete", "keepMonthly", "maxAge"),
        "2026-03-09T02:00": ("maxAge",),
        "2026-02-10T02:00": ("keepMonthly",),
    }


@pytest.mark.parametrize("rule", ["keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])
def test_a_calendar_rule_of_zero_is_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        RetentionPolicy(**{rule: 0})  # type: ignore[arg-type]
