"""Leader election's pure part: who may hold the Lease now, and what holding it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgwarden.operator import leader

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def lease(holder: str, renewed: datetime, duration: int = 15, transitions: int = 0) -> dict[str, object]:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        },
    }


def test_the_first_replica_takes_a_lease_nobody_holds() -> None:
    spec = leader.claim(None, "a", NOW, 15)
    assert spec is not None and spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["renewTime"] == "2025-03-01T12:00:00.000000Z" and spec["leaseDurationSeconds"] == 15


def test_another_replica_waits_while_the_holder_renews_in_time() -> None:
    assert leader.claim(lease("a", NOW - timedelta(seconds=14)), "b", NOW, 15) is None


def test_a_lease_not_renewed_for_its_duration_is_taken_over_and_counted() -> None:
    spec = leader.claim(lease("a", NOW - timedelta(seconds=16), transitions=2), "b", NOW, 15)
    assert spec is not None and spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 3
    assert spec["acquireTime"] == spec["renewTime"]


def test_the_holder_renews_keeping_when_it_acquired() -> None:
    held = lease("a", NOW - timedelta(seconds=5), transitions=1)
    spec = leader.claim(held, "a", NOW, 15)
    assert spec is not None and spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == held["spec"]["acquireTime"]  # type: ignore[index]
    assert spec["renewTime"] == "2025-03-01T12:00:00.000000Z"


def test_a_released_lease_is_taken_at_once() -> None:
    spec = leader.claim(lease("", NOW), "b", NOW, 15)
    assert spec is not None and spec["holderIdentity"] == "b"


def test_the_holder_gives_up_before_anyone_else_may_take_over() -> None:
    timing = leader.Timing()
    assert timing.renew_deadline + timing.retry < timing.duration
    assert timing.duration + timing.retry < 30  # a handover within 30 s, with time to start


def test_a_forbidden_lease_says_which_rules_to_grant_or_how_to_run_without() -> None:
    elector = leader.Elector(None, "ops", "a", lost=lambda: None)  # type: ignore[arg-type]
    message = elector._problem(leader.KubeError(403, 'leases "pgwarden-operator" is forbidden'))
    assert "leases (coordination.k8s.io)" in message and "namespace ops" in message
    assert "--no-leader-election" in message


def test_credentials_that_cannot_be_loaded_stop_the_operator_with_where_they_were_looked_for(
    tmp_path: Path,
) -> None:
    from pgwarden.console import build_parser

    args = build_parser().parse_args(
        ["operator", "--kubeconfig", str(tmp_path / "missing"), "--metrics-port", "0", "--liveness-port", "0"]
    )
    with pytest.raises(SystemExit, match=f"cannot load Kubernetes credentials \\({tmp_path / 'missing'}\\)"):
        args.run(args)
