"""A set's targets: the selector as the API reads it, rollout order, child names, staggered schedules."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from croniter import croniter

from pgwarden.api.sets import LabelSelector, RolloutOrder
from pgwarden.operator.set_targets import (
    CHILD_NAME_LIMIT,
    child_name,
    order_queries,
    ordered,
    selector_query,
    stagger_offset,
    staggered,
)

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
UID = "5e75e75e-1111-2222-3333-444455556666"


def test_the_selector_reads_as_the_api_query_syntax() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "prod", "app": "shop"},
            "matchExpressions": [
                {"key": "region", "operator": "In", "values": ["eu", "us"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "pgwarden.io/tenant", "operator": "Exists"},
                {"key": "size", "operator": "NotIn", "values": ["xl"]},
            ],
        }
    )
    assert (
        selector_query(selector)
        == "app=shop,tier=prod,region in (eu,us),!legacy,pgwarden.io/tenant,size notin (xl)"
    )


def test_an_empty_selector_is_refused_it_would_take_every_secret() -> None:
    with pytest.raises(ValueError, match="every Secret of the namespace"):
        LabelSelector.model_validate({})


def test_order_by_a_label_asks_once_per_value_and_puts_the_rest_last_by_name() -> None:
    order = RolloutOrder.model_validate({"byLabel": "tier", "values": ["staging", "production"]})
    assert order_queries("db=true", order) == ["db=true,tier=staging", "db=true,tier=production"]
    assert order_queries("", order) == ["tier=staging", "tier=production"]
    assert order_queries("db=true", RolloutOrder()) == []
    names = ["zeta", "alpha", "prod-b", "prod-a", "stage"]
    assert ordered(names, [["stage"], ["prod-b", "prod-a", "not-a-target"]]) == [
        "stage",
        "prod-a",
        "prod-b",
        "alpha",
        "zeta",
    ]
    assert ordered(names) == sorted(names)


@pytest.mark.parametrize(
    "secret",
    [
        "tenant-1",
        "a" * 253,
        "tenant.example.com",
        "x.y-z.0",
        "9-starts-with-a-digit",
        "a" * 60 + "." + "b" * 60,
    ],
)
def test_child_names_are_valid_short_and_stable_for_any_secret_name(secret: str) -> None:
    name = child_name("tenants", UID, secret)
    assert DNS_SUBDOMAIN.match(name) and "." not in name, name
    assert len(name) <= CHILD_NAME_LIMIT
    assert name == child_name("tenants", UID, secret)
    long_set = child_name("s" * 63, UID, secret)
    assert len(long_set) <= CHILD_NAME_LIMIT and DNS_SUBDOMAIN.match(long_set)


def test_secrets_that_read_alike_get_children_of_their_own_and_a_new_set_new_names() -> None:
    assert child_name("t", UID, "a.b") != child_name("t", UID, "a-b")
    assert child_name("t", UID, "x" * 100 + "1") != child_name("t", UID, "x" * 100 + "2")
    assert child_name("t", UID, "a") != child_name("t", "another-uid", "a")


def test_a_staggered_schedule_is_the_same_for_a_secret_and_spread_within_the_window() -> None:
    offsets = {stagger_offset(f"tenant-{i}", "2h") for i in range(300)}
    assert all(timedelta(0) <= offset < timedelta(hours=2) for offset in offsets)
    assert len(offsets) > 60, "300 targets land on many different minutes"
    assert stagger_offset("tenant-1", "2h") == stagger_offset("tenant-1", "2h")
    assert staggered("0 2 * * *", timedelta(minutes=95)) == "35 3 * * *"
    assert staggered("30 23 * * 1-5", timedelta(minutes=45)) == "15 0 * * 1-5"
    assert staggered("0 2,14 * * *", timedelta(minutes=61)) == "1 3,15 * * *"
    assert staggered("15 * * * *", timedelta(minutes=50)) == "5 * * * *"
    for i in range(50):
        assert croniter.is_valid(staggered("45 23 * * *", stagger_offset(f"t{i}", "3h")))
