"""The rollout plan: a pure function of where each target stands."""

from __future__ import annotations

from pgwarden.api.sets import Rollout
from pgwarden.operator.set_rollout import Halt, Standing, plan

W, R, S, F, N = Standing.WAITING, Standing.RUNNING, Standing.SUCCEEDED, Standing.FAILED, Standing.NEW


def rollout(**fields: int) -> Rollout:
    return Rollout.model_validate(fields)


def standings(*states: Standing) -> list[tuple[str, Standing]]:
    return [(f"t{i}", state) for i, state in enumerate(states, 1)]


def test_canaries_are_the_first_targets_and_run_alone() -> None:
    config = rollout(canary=2, maxParallel=5)
    assert plan(standings(W, W, W, W), config, approved=True).start == ("t1", "t2")
    assert plan(standings(S, R, W, W), config, approved=True).start == ()
    assert plan(standings(S, S, W, W), config, approved=True).start == ("t3", "t4")


def test_a_canary_not_created_yet_waits_and_no_other_target_takes_its_place() -> None:
    assert plan(standings(N, W, W), rollout(canary=1, maxParallel=3), approved=True).start == ()


def test_after_the_canaries_at_most_max_parallel_run_at_once() -> None:
    config = rollout(canary=1, maxParallel=2)
    assert plan(standings(S, R, W, W, W), config, approved=True).start == ("t3",)
    assert plan(standings(S, R, R, W, W), config, approved=True).start == ()
    assert plan(standings(S, S, S, W, W), config, approved=True).start == ("t4", "t5")


def test_max_failures_halts_and_a_failed_canary_halts_at_once() -> None:
    config = rollout(canary=1, maxParallel=3, maxFailures=2)
    assert plan(standings(S, F, W, W), config, approved=True).start == ("t3", "t4")
    halted = plan(standings(S, F, F, W), config, approved=True)
    assert halted.halted == Halt.MAX_FAILURES and halted.start == ()
    canary = plan(standings(F, W, W), config, approved=True)
    assert canary.halted == Halt.CANARY_FAILED and canary.start == ()


def test_nothing_starts_before_approval_and_no_canary_means_straight_to_waves() -> None:
    assert plan(standings(W, W), rollout(canary=0, maxParallel=2), approved=False).start == ()
    assert plan(standings(W, W, W), rollout(canary=0, maxParallel=2), approved=True).start == ("t1", "t2")


def test_fewer_targets_than_canaries_are_all_canaries() -> None:
    result = plan(standings(S, S), rollout(canary=5), approved=True)
    assert result.canary_left == 0 and result.halted is None
