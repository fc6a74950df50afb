"""A set's targets: which Secrets, in which order, and the names and schedules of their children. Pure.

The Secrets a selector chooses are asked of the API server by label selector (`selector_query`), which
answers with their names only (`kube.secret_names`): the operator never sees a Secret's labels, data or
annotations. Ordering by a label's value therefore asks once per value (`order_queries`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import timedelta

from pgwarden.api.durations import parse_duration
from pgwarden.api.sets import LabelSelector, RolloutOrder, SelectorOperator, SetTargets

CHILD_NAME_LIMIT = 63  # a child's name shows in `kubectl get`, and its Jobs' names start with it
_HASH_LENGTH = 6


def selector_query(selector: LabelSelector) -> str:
    """The label selector in the API's query syntax (`tier=prod,region in (eu,us),!legacy`)."""
    parts = [f"{key}={value}" for key, value in sorted(selector.match_labels.items())]
    for requirement in selector.match_expressions:
        values = ",".join(requirement.values or [])
        parts.append(
            {
                SelectorOperator.IN: f"{requirement.key} in ({values})",
                SelectorOperator.NOT_IN: f"{requirement.key} notin ({values})",
                SelectorOperator.EXISTS: requirement.key,
                SelectorOperator.DOES_NOT_EXIST: f"!{requirement.key}",
            }[SelectorOperator(requirement.operator)]
        )
    return ",".join(parts)


def order_queries(selector: str, order: RolloutOrder) -> list[str]:
    """One query per value of `order.byLabel`, in rollout order (empty when ordering by name)."""
    if not order.by_label or not order.values:
        return []
    return [",".join(filter(None, (selector, f"{order.by_label}={value}"))) for value in order.values]


def ordered(names: Iterable[str], ranks: Sequence[Iterable[str]] = ()) -> list[str]:
    """`names` in rollout order: those in `ranks[0]` first, then `ranks[1]`, ..., then the rest; by name
    within each."""
    rank: dict[str, int] = {}
    for index, group in enumerate(ranks):
        for name in group:
            rank.setdefault(name, index)
    return sorted(set(names), key=lambda name: (rank.get(name, len(ranks)), name))


def listed(targets: SetTargets) -> list[str] | None:
    """The targets a list names (None for a selector)."""
    return [ref.name for ref in targets.list_] if targets.list_ is not None else None


def child_name(set_name: str, set_uid: str, secret: str) -> str:
    """`<set>-<secret>-<hash>`, at most 63 characters, the same every time for one set and Secret: dots become
    dashes (a Secret name may have them), the hash keeps two Secrets that read alike apart, and the set's uid
    in it keeps a recreated set from adopting the children of the one it replaces."""
    digest = hashlib.sha256(f"{set_uid}/{secret}".encode()).hexdigest()[:_HASH_LENGTH]
    suffix = f"-{digest}"
    base = f"{set_name}-{secret}".replace(".", "-")
    return base[: CHILD_NAME_LIMIT - len(suffix)].rstrip("-") + suffix


def stagger_offset(secret: str, window: str) -> timedelta:
    """A target's place in the stagger window: whole minutes, the same for the same Secret name."""
    minutes = max(int(parse_duration(window).total_seconds() // 60), 1)
    return timedelta(minutes=int(hashlib.sha256(secret.encode()).hexdigest(), 16) % minutes)


def staggered(schedule: str, offset: timedelta) -> str:
    """`schedule` (minute a number, hour numbers or *) started `offset` later; the hour wraps at midnight."""
    minute, hours, *rest = schedule.split()
    total = int(minute) + int(offset.total_seconds() // 60)
    carry, minute_now = divmod(total, 60)
    if hours != "*":
        hours = ",".join(str((int(hour) + carry) % 24) for hour in hours.split(","))
    return " ".join([str(minute_now), hours, *rest])


def child_database(targets: SetTargets, target: str) -> dict[str, object]:
    """`target`'s child's spec.database: its Secret, with the set's sslMode and CA, as the API spells them."""
    database: dict[str, object] = {"secretRef": {"name": target}}
    if targets.ssl_mode is not None:
        database["sslMode"] = str(targets.ssl_mode)
    if targets.ca_secret_ref is not None:
        database["caSecretRef"] = targets.ca_secret_ref.model_dump(mode="json", by_alias=True)
    return database
