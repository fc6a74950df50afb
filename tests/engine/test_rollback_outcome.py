"""How a failed run's outcome follows from what was committed and what the rollback achieved."""

import pytest

from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import Outcome, RollbackOutcome
from pgwarden.engine.recovery import undo as rollback


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (RollbackStrategy.TRANSACTION, RollbackOutcome.SUCCEEDED),
        (RollbackStrategy.NONE, RollbackOutcome.NOT_NEEDED),
    ],
)
def test_a_failure_before_any_commit_leaves_the_database_as_it_was(
    strategy: RollbackStrategy, expected: RollbackOutcome
) -> None:
    result = rollback.nothing_committed(strategy)

    assert result.outcome == expected
    assert rollback.run_outcome(False, result) == Outcome.ROLLED_BACK


@pytest.mark.parametrize("strategy", [RollbackStrategy.TRANSACTION, RollbackStrategy.NONE])
def test_committed_migrations_left_applied_make_the_run_failed(strategy: RollbackStrategy) -> None:
    result = rollback.left_applied(strategy, ["0001", "0002"])

    assert "0001, 0002" in (result.message or "")
    assert rollback.run_outcome(True, result) == Outcome.FAILED


def test_a_restore_without_a_backup_fails_and_says_what_to_pass() -> None:
    result = rollback.no_backup()

    assert result.outcome == RollbackOutcome.FAILED
    assert "--backup-to" in (result.message or "")
    assert rollback.run_outcome(True, result) == Outcome.FAILED
