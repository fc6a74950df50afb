"""DatabaseBackupSet: one DatabaseBackup per target, and the set's status counted from theirs. Pure.

Each child is a DatabaseBackup like any other (its CronJob, retention, drills, copies, its own folder under
the storage prefix); with `stagger`, each child's schedule starts at an offset of its own within the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pgwarden.api.backup import BackupPhase
from pgwarden.api.backup_set import BackupTargetCounts, DatabaseBackupSet, DatabaseBackupSetStatus
from pgwarden.api.sets import LISTED_LIMIT, SetPhase
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import parse_time
from pgwarden.operator.set_children import ChildSpecs, ChildState, child_manifest
from pgwarden.operator.set_status import Replacement, SetDecision, failures, named, phase_events
from pgwarden.operator.set_targets import child_database, child_name, stagger_offset, staggered
from pgwarden.operator.status import clip, second

KIND = "DatabaseBackupSet"


def own_spec(bset: DatabaseBackupSet, target: str) -> dict[str, Any]:
    """What `target`'s child alone has: its database and, staggered, its own schedule."""
    own: dict[str, Any] = {"database": child_database(bset.spec.targets, target)}
    schedule = bset.spec.template.schedule
    if bset.spec.stagger is not None and schedule:
        shifted = staggered(schedule, stagger_offset(target, bset.spec.stagger.window))
        if shifted != schedule:  # an offset of 0: the template's own, so the same spec hashes the same
            own["schedule"] = shifted
    return own


def child_spec(bset: DatabaseBackupSet, target: str) -> dict[str, Any]:
    """The spec of `target`'s child: the template with its database and, staggered, its own schedule."""
    shared = bset.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {**shared, **own_spec(bset, target)}


def decide(
    bset: DatabaseBackupSet,
    targets: Sequence[str],
    children: Sequence[ChildState],
    now: datetime,
    *,
    targets_problem: str | None = None,
) -> SetDecision[DatabaseBackupSetStatus]:
    """The next step for a backup set: a child for every target (created, or given the new spec), none for
    a Secret no longer a target, and the counts of the children's backups."""
    now = second(now)
    meta = bset.metadata
    old = bset.status or DatabaseBackupSetStatus()
    by_target = {child.target: child for child in children if not child.deleting}
    create: list[Obj] = []
    replace: list[Replacement] = []
    specs = ChildSpecs(bset.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True))
    for target in targets:
        own = own_spec(bset, target)
        wanted = specs.hash(own)
        child = by_target.get(target)
        if child is None:
            name = child_name(meta.name or "", meta.uid or "", target)
            owner = {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid}
            create.append(child_manifest(KIND, owner, name, specs.spec(own), wanted))
        elif child.spec_hash != wanted:
            replace.append(Replacement(child.name, specs.spec(own), wanted))
    current = [by_target[target] for target in targets if target in by_target]
    gone = (
        []
        if targets_problem
        else [
            c.name
            for c in children
            if c.target not in set(targets) and not c.deleting and c.phase != BackupPhase.RUNNING
        ]
    )
    new = _status(bset, len(targets), current, targets_problem)
    ready = new.phase == SetPhase.READY
    stale = new.targets.stale if new.targets else 0
    new.conditions = set_conditions(
        old.conditions,
        [
            Want("Ready", ready, str(new.phase), new.message or ""),
            Want(
                "Stale",
                stale > 0,
                "NoRecentBackup" if stale else "Fresh",
                f"{stale} target(s) without a recent backup: {', '.join(new.stale)}"
                if stale
                else "no target is stale",
            ),
        ],
        meta.generation or 1,
        now,
    )
    return SetDecision(
        status=new,
        events=phase_events(old, new, frozenset({SetPhase.DEGRADED})),
        create=tuple(create),
        replace=tuple(replace),
        delete=tuple(gone),
    )


def _status(
    bset: DatabaseBackupSet, total: int, children: Sequence[ChildState], targets_problem: str | None
) -> DatabaseBackupSetStatus:
    backed_up = [c for c in children if c.last_backup]
    stale = [c for c in children if c.conditions.get("Stale") == "True"]
    failed = [c for c in children if c.last_run_failed or (c.settled and c.phase == BackupPhase.FAILED)]
    counts = BackupTargetCounts(
        total=total,
        done=f"{len(backed_up)}/{total}",
        backed_up=len(backed_up),
        stale=len(stale),
        unverified=len([c for c in children if not c.verified]) + total - len(children),
        failed=len(failed),
        pending=len([c for c in children if not c.last_backup and c not in failed]) + total - len(children),
    )
    listed, failures_total = failures(failed)
    new = DatabaseBackupSetStatus(
        observed_generation=bset.metadata.generation or 1,
        targets=counts,
        stale=[c.target for c in stale[:LISTED_LIMIT]],
        failures=listed,
    )
    if stale:
        new.stale_total = len(stale)
    if failures_total is not None:
        new.failures_total = failures_total
    times = sorted(moment for c in backed_up if (moment := parse_time(c.last_backup)) is not None)
    if times:
        new.newest_backup, new.oldest_backup = times[-1], times[0]
    summary = (
        f"{counts.backed_up}/{total} targets backed up, {counts.stale} stale, {counts.failed} failed, "
        f"{counts.unverified} without a verified restore"
    )
    if targets_problem is not None:
        new.phase, new.message = SetPhase.PENDING, clip(targets_problem)
    elif total == 0:
        new.phase, new.message = (
            SetPhase.PENDING,
            "no targets: no Secret of the namespace matches spec.targets.selector",
        )
    elif failed or stale:
        problems = named(listed, failures_total) if failed else ", ".join(new.stale)
        new.phase, new.message = SetPhase.DEGRADED, clip(f"{summary}: {problems}")
    elif len([c for c in children if c.conditions.get("Ready") == "True"]) < total:
        new.phase, new.message = SetPhase.PENDING, summary  # children not created or not scheduled yet
    else:
        new.phase, new.message = SetPhase.READY, summary
    return new
