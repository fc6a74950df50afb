"""Standard Kubernetes conditions, set the way `metav1.Condition` expects: the transition time moves only on change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Want:
    """A condition as a decision wants it; `set_conditions` adds the times."""

    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str


def _status(value: bool | None) -> str:
    return "Unknown" if value is None else ("True" if value else "False")


def set_conditions(
    previous: list[Obj], wanted: list[Want], generation: int | None, now: datetime
) -> list[Obj]:
    """The new conditions list: each wanted type replaced, others kept, lastTransitionTime kept when the
    status did not change."""
    by_type = {str(c.get("type")): c for c in previous}
    result = [c for c in previous if c.get("type") not in {w.type for w in wanted}]
    for want in wanted:
        old = by_type.get(want.type)
        status = _status(want.status)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        condition: Obj = {
            "type": want.type,
            "status": status,
            "reason": want.reason,
            "message": want.message[:32768],
            "lastTransitionTime": since or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        result.append(condition)
    order = {w.type: i for i, w in enumerate(wanted)}
    return sorted(result, key=lambda c: order.get(str(c.get("type")), len(order)))


def condition(conditions: list[Obj], kind: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == kind), None)
