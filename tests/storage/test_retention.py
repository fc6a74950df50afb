"""Retention decisions, as pure functions: what a prune keeps, deletes, and leaves alone."""

from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.storage.retention import (
    BackupRecord,
    DebrisRecord,
    Decision,
    RetentionPolicy,
    plan_prune,
)

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def daily(days: int, *, verified: frozenset[int] = frozenset()) -> list[BackupRecord]:
    """One backup a day for `days` days, index 0 the newest (taken today)."""
    return [BackupRecord(f"b{i:02d}", NOW - timedelta(days=i), verified=i in verified) for i in range(days)]


def ids(decisions: list[Decision]) -> set[str]:
    return {d.id for d in decisions}


def test_keep_last_keeps_the_n_newest_and_deletes_the_rest() -> None:
    plan = plan_prune(daily(10), [], RetentionPolicy(keep_last=3), NOW)
    assert ids(plan.keep) == {"b00", "b01", "b02"}
    assert ids(plan.delete) == {f"b{i:02d}" for i in range(3, 10)}


def test_max_age_keeps_every_backup_younger_than_it() -> None:
    plan = plan_prune(daily(10), [], RetentionPolicy(max_age=timedelta(days=4)), NOW)
    assert ids(plan.keep) == {"b00", "b01", "b02", "b03"}


def test_a_backup_either_rule_keeps_is_kept() -> None:
    plan = plan_prune(daily(10), [], RetentionPolicy(keep_last=2, max_age=timedelta(days=5)), NOW)
    assert ids(plan.keep) == {"b00", "b01", "b02", "b03", "b04"}
    plan = plan_prune(daily(10), [], RetentionPolicy(keep_last=6, max_age=timedelta(days=1)), NOW)
    assert ids(plan.keep) == {f"b{i:02d}" for i in range(6)}


def test_the_newest_complete_backup_survives_even_when_every_backup_is_too_old() -> None:
    old = [BackupRecord(f"b{i}", NOW - timedelta(days=100 + i)) for i in range(3)]
    plan = plan_prune(old, [], RetentionPolicy(max_age=timedelta(days=7)), NOW)
    assert ids(plan.keep) == {"b0"}
    assert "newest complete backup" in plan.keep[0].reason


def test_the_newest_verified_backup_survives_retention() -> None:
    plan = plan_prune(daily(10, verified=frozenset({6, 8})), [], RetentionPolicy(keep_last=2), NOW)
    assert ids(plan.keep) == {"b00", "b01", "b06"}
    assert "b08" in ids(plan.delete)
    kept = {d.id: d.reason for d in plan.keep}
    assert kept["b06"] == "newest verified backup"


def test_without_rules_no_complete_backup_is_deleted() -> None:
    plan = plan_prune(daily(5), [], RetentionPolicy(), NOW)
    assert not plan.delete
    assert len(plan.keep) == 5


def test_debris_goes_only_after_the_grace_period() -> None:
    debris = [
        DebrisRecord("old", NOW - timedelta(hours=25)),
        DebrisRecord("running", NOW - timedelta(minutes=5)),
    ]
    plan = plan_prune([], debris, RetentionPolicy(keep_last=1), NOW)
    assert [d.name for d in plan.delete_debris] == ["old"]
    assert [d.name for d in plan.keep_debris] == ["running"]


def test_order_is_by_completion_time_not_by_input_order() -> None:
    shuffled = list(reversed(daily(4)))
    plan = plan_prune(shuffled, [], RetentionPolicy(keep_last=1), NOW)
    assert ids(plan.keep) == {"b00"}


def test_policies_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(keep_last=0)
    with pytest.raises(ValueError):
        RetentionPolicy(max_age=timedelta(0))
