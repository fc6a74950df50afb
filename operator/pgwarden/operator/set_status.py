"""What a set's decision is made of, and the status blocks both set kinds build alike. Pure.

A `SetDecision` says which children to create, replace (their spec changed), start (approve) and delete,
and the status to write; `set_sync` carries it out. Carrying it out twice does no harm: creating an existing
child, writing an annotation it already has or deleting one already gone changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pgwarden.api.sets import LISTED_LIMIT, TARGET_MESSAGE_LIMIT, SetStatus, TargetFailure
from pgwarden.operator.set_children import ChildState
from pgwarden.operator.status import Event, clip

Obj = dict[str, Any]
S = TypeVar("S", bound=SetStatus)


@dataclass(frozen=True)
class Replacement:
    """A child whose spec the set changed: its new spec and that spec's hash."""

    name: str
    spec: Obj
    spec_hash: str


@dataclass(frozen=True)
class Release:
    """A child started together with the part of its spec held back until its turn (the template's
    rehearsal): its whole spec, that spec's hash, and the approval of the generation the new spec makes."""

    name: str
    spec: Obj
    spec_hash: str
    approved: str


@dataclass(frozen=True)
class SetDecision(Generic[S]):
    """What the operator does for a set now."""

    status: S
    events: tuple[Event, ...] = ()
    create: tuple[Obj, ...] = ()  # child manifests
    replace: tuple[Replacement, ...] = ()
    approve: tuple[tuple[str, str], ...] = ()  # (child, pgwarden.io/approved value): starts it
    release: tuple[Release, ...] = ()  # children started with their whole spec
    delete: tuple[str, ...] = ()  # children of targets gone
    deadline: datetime | None = None


def failures(children: Sequence[ChildState]) -> tuple[list[TargetFailure], int | None]:
    """The failed children (in the order given), at most LISTED_LIMIT, and how many there are in all."""
    failed = [
        TargetFailure(
            target=child.target,
            resource=child.name,
            message=clip(child.message, TARGET_MESSAGE_LIMIT) or None,
        )
        for child in children
    ]
    return failed[:LISTED_LIMIT], (len(failed) or None)


def named(failed: Sequence[TargetFailure], total: int | None, limit: int = 3) -> str:
    """`tenant-4 (relation "orders" already exists), tenant-9 (...) and 3 more` for a message."""
    shown = ", ".join(f"{item.target} ({item.message or 'failed'})" for item in failed[:limit])
    more = (total or 0) - min(len(failed), limit)
    return f"{shown} and {more} more" if more > 0 else shown


def phase_events(old: SetStatus, new: SetStatus, warning_phases: frozenset[str]) -> tuple[Event, ...]:
    """One Event when the phase changes (Warning for `warning_phases`), none otherwise."""
    if old.phase == new.phase or new.phase is None:
        return ()
    kind = "Warning" if new.phase in warning_phases else "Normal"
    return (Event(kind, str(new.phase), new.message or ""),)
