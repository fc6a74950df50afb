"""Standard Kubernetes conditions, set the way `metav1.Condition` expects: the transition time moves only on change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pgwarden.api.common import Condition, ConditionStatus


@dataclass(frozen=True)
class Want:
    """A condition as a decision wants it; `set_conditions` adds the times."""

    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str


def _reason(text: str) -> str:
    """A reason metav1.Condition accepts (CamelCase identifier), from one another program chose."""
    cleaned = re.sub(r"[^A-Za-z0-9_,:]", "", text).rstrip(",:")
    return cleaned if cleaned[:1].isalpha() else "Unknown"


def _status(value: bool | None) -> ConditionStatus:
    if value is None:
        return ConditionStatus.UNKNOWN
    return ConditionStatus.TRUE if value else ConditionStatus.FALSE


def set_conditions(
    previous: list[Condition], wanted: list[Want], generation: int | None, now: datetime
) -> list[Condition]:
    """The new conditions list: each wanted type replaced, others kept, lastTransitionTime kept when the
    status did not change."""
    by_type = {c.type: c for c in previous}
    result = [c for c in previous if c.type not in {w.type for w in wanted}]
    for want in wanted:
        old = by_type.get(want.type)
        status = _status(want.status)
        since = old.last_transition_time if old and old.status == status else None
        condition = Condition(
            type=want.type,
            status=status,
            reason=_reason(want.reason),
            message=want.message[:32768],
            last_transition_time=since or now.replace(microsecond=0),
        )
        if generation is not None:
            condition.observed_generation = generation
        result.append(condition)
    order = {w.type: i for i, w in enumerate(wanted)}
    return sorted(result, key=lambda c: order.get(c.type, len(order)))


def condition(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def is_true(conditions: list[Condition], kind: str) -> bool:
    found = condition(conditions, kind)
    return found is not None and found.status == ConditionStatus.TRUE
