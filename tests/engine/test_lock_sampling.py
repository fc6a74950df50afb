"""The pure half of lock sampling: samples folded into one record per lock, with how long it was held and
awaited, the statement that first held it, and which of them break a limit on blocking writes."""

from __future__ import annotations

from pgwarden.engine.migrate.lock_sampling import LockFold, over_limit
from pgwarden.engine.migrate.statements import RunningStatement

ALTER = RunningStatement(version="0002", script="0002_x.sql", line=1, text="ALTER TABLE orders ...", pid=7)


def test_a_lock_is_held_from_the_first_to_the_last_sample_that_saw_it_granted() -> None:
    fold = LockFold()
    fold.add(10.0, [(7, "orders", "AccessExclusiveLock", False)], ALTER)
    fold.add(
        10.5, [(7, "orders", "AccessExclusiveLock", True), (8, "orders", "AccessShareLock", True)], ALTER
    )
    fold.add(13.0, [(7, "orders", "AccessExclusiveLock", True)], None)

    locks = {lock.mode: lock for lock in fold.locks()}

    exclusive = locks["AccessExclusiveLock"]
    assert (exclusive.held_seconds, exclusive.waited_seconds) == (2.5, 0.5)
    assert (exclusive.migration, exclusive.statement, exclusive.blocks_writes) == (
        "0002",
        "0002_x.sql:1",
        True,
    )
    share = locks["AccessShareLock"]  # another session of the run (a count): no statement of a migration
    assert (share.statement, share.blocks_writes, share.held_seconds) == (None, False, 0.0)
    assert [lock.mode for lock in fold.locks()] == ["AccessExclusiveLock", "AccessShareLock"]


def test_only_locks_that_block_writes_held_past_the_limit_break_it() -> None:
    fold = LockFold()
    fold.add(0.0, [(7, "orders", "AccessExclusiveLock", True), (7, "items", "AccessShareLock", True)], ALTER)
    fold.add(3.0, [(7, "orders", "AccessExclusiveLock", True), (7, "items", "AccessShareLock", True)], ALTER)

    assert [lock.relation for lock in over_limit(fold.locks(), 2.0)] == ["orders"]
    assert over_limit(fold.locks(), 3.0) == []
