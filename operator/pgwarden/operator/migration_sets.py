"""DatabaseMigrationSet: from the set, its targets and its children to the next step and the set's status. Pure.

Every target gets a child DatabaseMigration as soon as it is a target, with `approval: Manual`: a child runs
only once the set approves it (`pgwarden.io/approved=<its generation>`), which the set does as its rollout
reaches it (`set_rollout`) and, for a Manual set, only after one approval of the set itself
(`pgwarden.io/approved=<set generation>-<SQL digest>`). A child's spec is the template's with its database;
when the template changes every child gets the new spec (a new generation), so what it ran before is never
approved again: it waits for the set's new approval and its turn.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import Approval, ApprovalFile, ApprovalStatus, MigrationPhase
from pgwarden.api.migration_set import DatabaseMigrationSet, DatabaseMigrationSetStatus
from pgwarden.api.sets import LISTED_LIMIT, SetPhase, TargetCounts, VersionCount
from pgwarden.operator import approval
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.set_children import ChildSpecs, ChildState, child_manifest
from pgwarden.operator.set_rollout import Halt, Plan, Standing, plan
from pgwarden.operator.set_status import Release, Replacement, SetDecision, failures, named, phase_events
from pgwarden.operator.set_targets import child_database, child_name
from pgwarden.operator.status import clip, second

KIND = "DatabaseMigrationSet"
FILES_SHOWN = 32  # files listed in status.approval; the digest covers all of them
CONFIG_MAP_LOOK = timedelta(seconds=30)  # ConfigMap edits send no event: look again while awaiting approval


def shared_spec(mset: DatabaseMigrationSet) -> dict[str, Any]:
    """What every child's spec has: the template, with approval Manual (the set approves each child)."""
    spec: dict[str, Any] = mset.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["approval"] = Approval.MANUAL.value
    return spec


def own_spec(mset: DatabaseMigrationSet, target: str) -> dict[str, Any]:
    """What `target`'s child alone has: its database."""
    return {"database": child_database(mset.spec.targets, target)}


def child_spec(mset: DatabaseMigrationSet, target: str) -> dict[str, Any]:
    """The spec of `target`'s child: the template, its database, and approval Manual (the set approves)."""
    return {**shared_spec(mset), **own_spec(mset, target)}


def content(mset: DatabaseMigrationSet, config_maps: approval.ConfigMapFiles | None) -> ApprovalStatus:
    """What one approval of the set approves: its generation and the digest of its SQL (inline files, the
    files its ConfigMaps hold now, or the image reference)."""
    source = mset.spec.template.migrations
    files: list[ApprovalFile] = []
    if source.inline is not None:
        where, files = "inline", approval.checksums(source.inline)
        digest = approval.digest(files)
    elif source.image is not None:
        where = f"image {source.image.image}, {source.image.path} (name it by digest to approve its content)"
        reference = f"{source.image.image} {source.image.path}"
        digest = hashlib.sha256(reference.encode()).hexdigest()[: approval.DIGEST_LENGTH]
    else:
        names = ", ".join(ref.name for ref in source.config_map_refs or [])
        files = approval.checksums(config_maps.files) if config_maps is not None else []
        where = f"ConfigMap {names} (each target runs exactly these files)"
        digest = approval.digest(files)
    return ApprovalStatus(
        generation=mset.metadata.generation or 1,
        approved=False,
        source=where,
        files=files[:FILES_SHOWN],
        digest=digest,
    )


def verdict(
    mset: DatabaseMigrationSet, shown: ApprovalStatus, config_maps: approval.ConfigMapFiles | None
) -> str:
    """Why a Manual set may not start anything yet ("" once approved)."""
    meta = mset.metadata
    wanted = f"{shown.generation}-{shown.digest}"
    command = f"kubectl annotate dbmigset {meta.name} -n {meta.namespace} {APPROVED_ANNOTATION}={wanted} --overwrite"
    if config_maps is not None and config_maps.missing:
        return f"ConfigMap {', '.join(config_maps.missing)} not found; create it, then approve"
    given = (meta.annotations.get(APPROVED_ANNOTATION) or "").strip()
    if given == wanted:
        return ""
    review = f"review status.approval (the files and their checksums), then approve every target at once: {command}"
    if not given:
        return f"waiting for approval of generation {shown.generation} (SQL {shown.digest}): {review}"
    return (
        f"{APPROVED_ANNOTATION}={given} approved another generation or other SQL than generation "
        f"{shown.generation} (SQL {shown.digest}), which needs its own approval: {review}"
    )


def held(spec: dict[str, object]) -> dict[str, object]:
    """A child's spec until its turn: without the template's rehearsal, which would otherwise run as soon as
    the child exists (a rehearsal runs before approval); the set gives it back when it starts the child."""
    return {key: value for key, value in spec.items() if key != "rehearsal"}


def standing(child: ChildState | None, current: bool) -> Standing:
    """Where a target stands; `current`: its child has the template's spec (held back or whole)."""
    if child is None:
        return Standing.NEW
    running = child.phase in (MigrationPhase.RUNNING, MigrationPhase.REHEARSING)
    if not current:  # given a new spec now: its new generation waits for its turn
        return Standing.RUNNING if running else Standing.WAITING
    if child.succeeded:
        return Standing.SUCCEEDED
    if child.failed:
        return Standing.FAILED
    if child.released or running:
        return Standing.RUNNING
    return Standing.WAITING


def _approval_value(
    child: ChildState, generation: int, shown: ApprovalStatus, manual: bool, from_config_maps: bool
) -> str | None:
    """What the set writes into a child to start its `generation`: the generation, and for ConfigMap files
    the digest the child shows (which must be the approved one); None while the child has not shown it yet."""
    if not from_config_maps:
        return str(generation)
    if child.approval_digest is None or (manual and child.approval_digest != shown.digest):
        return None
    return f"{generation}-{child.approval_digest}"


@dataclass(frozen=True)
class _Children:
    """What the set does to its children's specs, and where each target stands."""

    create: list[dict[str, Any]]
    replace: list[Replacement]
    standings: list[tuple[str, Standing]]
    whole: dict[str, tuple[dict[str, object], str]]  # target -> its whole spec and hash, where held back


def _children(
    mset: DatabaseMigrationSet, targets: Sequence[str], by_target: dict[str, ChildState]
) -> _Children:
    meta = mset.metadata
    whole_specs = ChildSpecs(shared_spec(mset))
    held_specs = ChildSpecs(held(whole_specs.shared))
    result = _Children([], [], [], {})
    for target in targets:
        own = own_spec(mset, target)
        hashes = (whole_specs.hash(own), held_specs.hash(own))
        child = by_target.get(target)
        if child is None:
            name = child_name(meta.name or "", meta.uid or "", target)
            result.create.append(child_manifest(KIND, _meta(mset), name, held_specs.spec(own), hashes[1]))
        elif child.spec_hash not in hashes:
            result.replace.append(Replacement(child.name, held_specs.spec(own), hashes[1]))
        if child is not None and child.spec_hash == hashes[1] != hashes[0]:
            result.whole[target] = (whole_specs.spec(own), hashes[0])
        current = child is not None and child.spec_hash in hashes
        result.standings.append((target, standing(child, current)))
    return result


def _starts(
    mset: DatabaseMigrationSet,
    start: Sequence[str],
    by_target: dict[str, ChildState],
    children: _Children,
    shown: ApprovalStatus,
) -> tuple[list[tuple[str, str]], list[Release]]:
    """Approvals of children whose spec is whole, and releases (whole spec and approval in one write) of
    children held back; a child being given a new spec is started once it shows it."""
    manual = mset.spec.template.approval == Approval.MANUAL
    from_config_maps = mset.spec.template.migrations.config_map_refs is not None
    replaced = {item.name for item in children.replace}
    approve: list[tuple[str, str]] = []
    release: list[Release] = []
    for target in start:
        child = by_target[target]
        if child.name in replaced:
            continue
        whole = children.whole.get(target)
        generation = child.generation + (1 if whole else 0)  # a new spec is a new generation
        value = _approval_value(child, generation, shown, manual, from_config_maps)
        if value is None:
            continue
        if whole is None:
            approve.append((child.name, value))
        else:
            release.append(Release(child.name, whole[0], whole[1], value))
    return approve, release


def decide(
    mset: DatabaseMigrationSet,
    targets: Sequence[str],
    children: Sequence[ChildState],
    now: datetime,
    config_maps: approval.ConfigMapFiles | None = None,
    *,
    targets_problem: str | None = None,
) -> SetDecision[DatabaseMigrationSetStatus]:
    """The next step for a set: `targets` in rollout order, `children` as the set's index shows them,
    `config_maps` what its ConfigMaps hold (Manual sets with ConfigMaps), `targets_problem` why the targets
    could not be read (then nothing is created or deleted)."""
    now = second(now)
    meta = mset.metadata
    generation = meta.generation or 1
    old = mset.status or DatabaseMigrationSetStatus()
    by_target = {child.target: child for child in children if not child.deleting}
    manual = mset.spec.template.approval == Approval.MANUAL
    shown = content(mset, config_maps)
    waiting_for = verdict(mset, shown, config_maps) if manual else ""
    shown.approved = not waiting_for

    planned = _children(mset, targets, by_target)
    rollout = plan(planned.standings, mset.spec.rollout, approved=not waiting_for and targets_problem is None)
    approve, release = _starts(mset, rollout.start, by_target, planned, shown)
    from_config_maps = mset.spec.template.migrations.config_map_refs is not None
    gone = [] if targets_problem else _gone(children, set(targets))

    new = _status(
        mset, planned.standings, by_target, rollout, shown if manual else None, waiting_for, targets_problem
    )
    new.conditions = set_conditions(old.conditions, _conditions(new, rollout), generation, now)
    deadline = now + CONFIG_MAP_LOOK if manual and from_config_maps and waiting_for else None
    return SetDecision(
        status=new,
        events=phase_events(old, new, frozenset({SetPhase.HALTED, SetPhase.FAILED})),
        create=tuple(planned.create),
        replace=tuple(planned.replace),
        approve=tuple(approve),
        release=tuple(release),
        delete=tuple(gone),
        deadline=deadline,
    )


def _meta(mset: DatabaseMigrationSet) -> dict[str, object]:
    meta = mset.metadata
    return {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid}


def _gone(children: Sequence[ChildState], targets: set[str]) -> list[str]:
    """Children of Secrets no longer targets, unless they run (deleting a child stops its Job)."""
    return [
        child.name
        for child in children
        if child.target not in targets
        and not child.deleting
        and child.phase not in (MigrationPhase.RUNNING, MigrationPhase.REHEARSING)
    ]


def _status(
    mset: DatabaseMigrationSet,
    standings: Sequence[tuple[str, Standing]],
    by_target: dict[str, ChildState],
    rollout: Plan,
    shown: ApprovalStatus | None,
    waiting_for: str,
    targets_problem: str | None,
) -> DatabaseMigrationSetStatus:
    count = Counter(standing for _, standing in standings)
    waiting = count[Standing.WAITING] + count[Standing.NEW]
    halted = rollout.halted is not None
    total = len(standings)
    counts = TargetCounts(
        total=total,
        done=f"{count[Standing.SUCCEEDED]}/{total}",
        succeeded=count[Standing.SUCCEEDED],
        failed=count[Standing.FAILED],
        running=count[Standing.RUNNING],
        pending=0 if halted else waiting,
        skipped=waiting if halted else 0,
    )
    failed = [by_target[target] for target, standing in standings if standing == Standing.FAILED]
    listed, failures_total = failures(failed)
    new = DatabaseMigrationSetStatus(
        observed_generation=mset.metadata.generation or 1,
        targets=counts,
        versions=_versions([by_target.get(target) for target, _ in standings]),
        failures=listed,
    )
    if failures_total is not None:
        new.failures_total = failures_total
    if shown is not None:
        new.approval = shown
    new.phase, new.message = _phase(mset, counts, rollout, waiting_for, targets_problem)
    if halted:
        new.message = clip(f"{new.message}: {named(listed, failures_total)}")
    return new


def _versions(children: Sequence[ChildState | None]) -> list[VersionCount]:
    """The versions targets are at, most common first (at most LISTED_LIMIT)."""
    counted = Counter((child.current_version if child else None) or "none" for child in children)
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    return [VersionCount(version=version, targets=n) for version, n in ranked[:LISTED_LIMIT]]


def _phase(
    mset: DatabaseMigrationSet,
    counts: TargetCounts,
    rollout: Plan,
    waiting_for: str,
    targets_problem: str | None,
) -> tuple[SetPhase, str]:
    summary = (
        f"{counts.succeeded}/{counts.total} targets migrated, {counts.running} running, "
        f"{counts.pending + counts.skipped} not started, {counts.failed} failed"
    )
    if targets_problem is not None:
        return SetPhase.PENDING, clip(targets_problem)
    if counts.total == 0:
        return SetPhase.PENDING, "no targets: no Secret of the namespace matches spec.targets.selector"
    if rollout.halted == Halt.CANARY_FAILED:
        return SetPhase.HALTED, f"halted: a canary failed, no further target starts ({summary})"
    if rollout.halted == Halt.MAX_FAILURES:
        limit = mset.spec.rollout.max_failures
        return (
            SetPhase.HALTED,
            f"halted after {counts.failed} failed target(s) (maxFailures {limit}; {summary})",
        )
    if counts.succeeded == counts.total:
        return SetPhase.COMPLETE, f"all {counts.total} targets migrated"
    if waiting_for and not counts.running:
        return SetPhase.AWAITING_APPROVAL, clip(waiting_for)
    if not counts.running and not counts.pending:
        return SetPhase.FAILED, f"finished with failures: {summary}"
    if rollout.canary_left:
        return SetPhase.PROGRESSING, f"canary: {rollout.canary_left} target(s) to succeed first; {summary}"
    return SetPhase.PROGRESSING, summary


def _conditions(new: DatabaseMigrationSetStatus, rollout: Plan) -> list[Want]:
    message = new.message or ""
    phase = new.phase
    halted = rollout.halted
    return [
        Want("Progressing", phase == SetPhase.PROGRESSING, str(phase), message),
        Want(
            "Halted",
            halted is not None,
            str(halted) if halted else "NotHalted",
            message if halted else "not halted",
        ),
        Want(
            "Complete",
            phase == SetPhase.COMPLETE,
            "AllSucceeded" if phase == SetPhase.COMPLETE else str(phase),
            message,
        ),
    ]
