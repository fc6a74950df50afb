"""A DatabaseMigrationSet's drift checks (spec.drift): their CronJobs, and what their Jobs report, summed
into status.drift and the Drifted condition. Pure: the set, its targets and what the watches show in, values out.

The targets are split by name into groups of TARGETS_PER_JOB, one CronJob each, owned by the set, so
Kubernetes keeps the schedule and a 1,000-target fleet is 40 Jobs, not 1,000 Pods. Each target's Secret
reaches the Job's pod only by `secretKeyRef`, under env names of its own (the operator never reads it). The
reference every target is compared with at the same version is the set's first target in rollout order (its
first canary): its recorded schema is what the set's version gives. The newest finished Job of each group
is what status.drift sums; their names are kept there, so the pods (their reports) are read only when one
of them is new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pgwarden.api.common import owner_reference
from pgwarden.api.fleet_drift import (
    DRIFTED_LISTED_LIMIT,
    NOTE_LIMIT,
    UNCHECKED_LISTED_LIMIT,
    DriftReport,
    DriftTask,
    DriftVerdict,
    FleetDriftStatus,
    TargetNote,
)
from pgwarden.api.migration_set import DatabaseMigrationSet
from pgwarden.api.task import DATABASE_SECRET_KEYS, JobKind, ResourceId, Task, target_env
from pgwarden.operator import naming
from pgwarden.operator.conditions import Want, set_conditions
from pgwarden.operator.jobs import (
    TASK_LABEL,
    JobSettings,
    PodParts,
    ca_volume,
    job_spec,
    secret_env,
    ssl_env,
    unless_current,
)
from pgwarden.operator.objects import Manifest, Obj
from pgwarden.operator.observe import ObservedRun, observe
from pgwarden.operator.policy import PolicyDenied
from pgwarden.operator.set_status import SetDecision
from pgwarden.operator.status import NORMAL, WARNING, Event, clip, failure_without_report, second

TARGETS_PER_JOB = 25
DRIFT = str(JobKind.DRIFT)
# Which group of targets a drift CronJob (and its Jobs) checks: the hash of their names.
GROUP_LABEL = "pgwarden.io/drift-targets"
CONDITION = "Drifted"


def groups(targets: Iterable[str]) -> list[list[str]]:
    """The targets by name, TARGETS_PER_JOB to a group (the same targets give the same groups, whatever their
    rollout order)."""
    names = sorted(set(targets))
    return [names[start : start + TARGETS_PER_JOB] for start in range(0, len(names), TARGETS_PER_JOB)]


def group_hash(group: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(group).encode()).hexdigest()[:16]


def is_drift(obj: Mapping[str, Any]) -> bool:
    """Whether a Job or CronJob is a set's drift check."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(TASK_LABEL) == DRIFT


def _parts(mset: DatabaseMigrationSet, group: Sequence[str], reference: str | None) -> PodParts:
    """A drift pod: each target's Secret keys under PGWARDEN_TARGET_<i>_*, the reference's under
    PGWARDEN_REFERENCE_*, the set's sslMode and CA for all; no storage, no libpq credentials of its own."""
    meta = mset.metadata
    env = [
        secret_env(target_env(index, key), target, key, optional=True)
        for index, target in enumerate(group)
        for key in DATABASE_SECRET_KEYS
    ]
    if reference is not None:
        env += [
            secret_env(target_env(None, key), reference, key, optional=True) for key in DATABASE_SECRET_KEYS
        ]
    targets = mset.spec.targets
    env += ssl_env(targets.ssl_mode, targets.ca_secret_ref)
    volumes: tuple[Manifest, ...] = ()
    mounts: tuple[Manifest, ...] = ()
    if targets.ca_secret_ref is not None:
        volume, mount = ca_volume(targets.ca_secret_ref)
        volumes, mounts = (volume,), (mount,)
    resource = ResourceId(kind=mset.kind, namespace=meta.namespace or "", name=meta.name or "")
    return PodParts(
        task=Task(
            kind=JobKind.DRIFT, resource=resource, drift=DriftTask(targets=list(group), reference=reference)
        ),
        database=None,
        storage=None,
        template=mset.spec.template.job_template,
        volumes=volumes,
        mounts=mounts,
        env=tuple(env),
    )


def drift_cronjob(
    mset: DatabaseMigrationSet, index: int, group: Sequence[str], reference: str | None, settings: JobSettings
) -> Manifest:
    """The CronJob of one group's drift checks: never two at once, never retried (a check that failed says
    why; the next one comes on schedule). PolicyDenied when the template's jobTemplate is not allowed."""
    meta = mset.metadata
    check = mset.spec.drift
    assert check is not None
    labels = {**naming.labels(mset.kind, meta.uid or ""), TASK_LABEL: DRIFT, GROUP_LABEL: group_hash(group)}
    annotations = naming.owner_annotations(mset.kind, meta.name or "")
    job = job_spec(mset, _parts(mset, group, reference), settings, backoff_limit=0, generation=None)
    job["template"]["metadata"]["labels"].update(labels)
    cronjob: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": naming.drift_cronjob_name(meta.name or "", meta.uid or "", index),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": dict(annotations),
            "ownerReferences": [owner_reference(mset.kind, meta.name or "", meta.uid or "")],
        },
        "spec": {
            "schedule": check.schedule,
            "suspend": check.suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": settings.starting_deadline_seconds,
            "successfulJobsHistoryLimit": settings.jobs_history_limit,
            "failedJobsHistoryLimit": settings.jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": job,
            },
        },
    }
    cronjob["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] = naming.spec_hash(cronjob)
    return cronjob


@dataclass(frozen=True)
class DriftInputs:
    """What the watches show of a set's drift checks: its CronJobs, its drift Jobs and, when one of the newest
    finished is not in status yet, their runs read with their pods (their reports)."""

    cronjobs: Sequence[Obj] = ()
    jobs: Sequence[Obj] = ()
    runs: Sequence[ObservedRun] | None = None  # None: the pods were not read


def newest_finished(jobs: Iterable[Obj], hashes: Iterable[str]) -> dict[str, Obj]:
    """The newest finished drift Job of each group (by its hash); groups without one are left out."""
    wanted = set(hashes)
    newest: dict[str, tuple[datetime, Obj]] = {}
    for job in jobs:
        group = ((job.get("metadata") or {}).get("labels") or {}).get(GROUP_LABEL)
        run = observe(job, [])
        if group not in wanted or not run.finished or not is_drift(job):
            continue
        when = run.completed_at or run.created_at
        if when is not None and (group not in newest or when > newest[group][0]):
            newest[group] = (when, job)
    return {group: job for group, (_, job) in newest.items()}


def pods_needed(mset: DatabaseMigrationSet, targets: Sequence[str], jobs: Iterable[Obj]) -> bool:
    """Whether a newest finished drift Job is not summed in status yet, so its pod's report must be read."""
    if mset.spec.drift is None:
        return False
    hashes = [group_hash(group) for group in groups(targets)]
    newest = newest_finished(jobs, hashes).values()
    old = mset.status.drift if mset.status else None
    return bool(newest) and reports_digest(newest) != (old.reports if old else None)


def reports_digest(jobs: Iterable[Obj]) -> str:
    """Which Jobs' reports a status.drift sums: a short digest of their names (their list would not fit the
    set's status at 1,000 targets)."""
    names = "\n".join(sorted(job["metadata"]["name"] for job in jobs))
    return hashlib.sha256(names.encode()).hexdigest()[:16]


@dataclass
class _Sum:
    """Reports summed over the groups."""

    targets: int = 0
    in_sync: int = 0
    drifted: int = 0
    unchecked: int = 0
    drifted_notes: list[TargetNote] = field(default_factory=list)
    unchecked_notes: list[TargetNote] = field(default_factory=list)

    def add(self, report: DriftReport) -> None:
        self.targets += report.counts.targets
        self.in_sync += report.counts.in_sync
        self.drifted += report.counts.drifted
        self.unchecked += report.counts.unchecked
        for finding in report.findings:
            note = TargetNote(target=finding.target, message=clip(finding.message, NOTE_LIMIT) or None)
            drifted = finding.verdict == DriftVerdict.DRIFTED
            (self.drifted_notes if drifted else self.unchecked_notes).append(note)

    def unread(self, group: Sequence[str], why: str) -> None:
        """A group whose Job left no report: its targets are not checked."""
        self.targets += len(group)
        self.unchecked += len(group)
        self.unchecked_notes += [TargetNote(target=target, message=clip(why, NOTE_LIMIT)) for target in group]


def _target(note: TargetNote) -> str:
    return note.target


def summed(
    runs: Sequence[ObservedRun], groups_of: Mapping[str, Sequence[str]], digest: str
) -> FleetDriftStatus:
    """status.drift from the newest finished run of each group (`groups_of`: Job name -> its targets)."""
    total = _Sum()
    for run in runs:
        report = run.report if isinstance(run.report, DriftReport) else None
        if report is not None and report.counts.targets:
            total.add(report)
            continue
        why = report.error.message if report is not None and report.error else failure_without_report(run)
        total.unread(groups_of[run.job], f"the drift Job {run.job} checked nothing: {why}")
    finished = [run.completed_at for run in runs if run.completed_at is not None]
    return FleetDriftStatus(
        checked_at=second(max(finished)) if finished else None,
        targets=total.targets,
        in_sync=total.in_sync,
        drifted=total.drifted,
        unchecked=total.unchecked,
        drifted_targets=sorted(total.drifted_notes, key=_target)[:DRIFTED_LISTED_LIMIT],
        unchecked_targets=sorted(total.unchecked_notes, key=_target)[:UNCHECKED_LISTED_LIMIT],
        reports=digest,
    )


def summary(status: FleetDriftStatus) -> str:
    """The Drifted condition's message: how many drifted, the first few by name, how many were not checked."""
    named = ", ".join(f"{note.target} ({note.message})" for note in status.drifted_targets[:3])
    more = status.drifted - min(len(status.drifted_targets), 3)
    if more > 0:
        named += f" and {more} more"
    text = (
        f"{status.drifted} of {status.targets} target(s) drifted: {named}"
        if status.drifted
        else f"{status.in_sync} of {status.targets} target(s) checked, none drifted"
    )
    if status.unchecked:
        first = status.unchecked_targets[0] if status.unchecked_targets else None
        text += f"; {status.unchecked} not checked" + (f" ({first.target}: {first.message})" if first else "")
    return clip(text)


def _drift_status(
    mset: DatabaseMigrationSet, gs: Sequence[Sequence[str]], inputs: DriftInputs
) -> FleetDriftStatus:
    """status.drift: the old one while no new Job finished, else summed afresh from the newest of each group."""
    old = mset.status.drift if mset.status else None
    by_hash = {group_hash(group): group for group in gs}
    newest = newest_finished(inputs.jobs, by_hash)
    if not newest:
        return FleetDriftStatus()
    digest = reports_digest(newest.values())
    if old is not None and old.reports == digest:
        return old
    runs = {run.job: run for run in inputs.runs or ()}
    observed = [runs.get(job["metadata"]["name"]) or observe(job, []) for job in newest.values()]
    groups_of = {job["metadata"]["name"]: by_hash[group] for group, job in newest.items()}
    return summed(observed, groups_of, digest)


def _want(drift: FleetDriftStatus, schedule: str) -> Want:
    if drift.reports is None:
        return Want(
            CONDITION, None, "NotCheckedYet", f"no drift check has finished yet (schedule {schedule})"
        )
    if drift.drifted:
        return Want(CONDITION, True, "SchemaDrift", summary(drift))
    return Want(CONDITION, False, "NoDrift", summary(drift))


def _events(old: FleetDriftStatus | None, new: FleetDriftStatus) -> tuple[Event, ...]:
    """One Event per new result that names other drifted targets, and one when the last drift is gone."""
    if new.reports is None or (old is not None and old.reports == new.reports):
        return ()
    was = old.drifted if old is not None else 0
    names = [note.target for note in new.drifted_targets]
    if new.drifted and (
        old is None or names != [n.target for n in old.drifted_targets] or was != new.drifted
    ):
        return (Event(WARNING, "SchemaDrift", summary(new)),)
    if not new.drifted and was:
        return (Event(NORMAL, "NoDrift", summary(new)),)
    return ()


def with_drift(
    decision: SetDecision[Any],
    mset: DatabaseMigrationSet,
    targets: Sequence[str],
    inputs: DriftInputs,
    settings: JobSettings,
    now: datetime,
) -> SetDecision[Any]:
    """The set's decision with its drift checks: their CronJobs created, replaced or deleted, status.drift,
    the Drifted condition and its Events. `targets` in rollout order (the first is the reference)."""
    existing = {c["metadata"]["name"]: c for c in inputs.cronjobs if is_drift(c)}
    status = decision.status
    generation = mset.metadata.generation or 1
    check = mset.spec.drift
    if check is None:
        conditions = [c for c in status.conditions if c.type != CONDITION]
        status = status.model_copy(update={"drift": None, "conditions": conditions})
        return replace(decision, status=status, delete_cronjobs=tuple(sorted(existing)))
    gs = groups(targets)
    try:
        wanted = [drift_cronjob(mset, i, group, targets[0], settings) for i, group in enumerate(gs)]
    except PolicyDenied as error:
        want = Want(CONDITION, None, "PolicyDenied", clip(f"no drift check runs: {error}"))
        conditions = set_conditions(status.conditions, [want], generation, second(now))
        status = status.model_copy(update={"conditions": conditions})
        return replace(decision, status=status, delete_cronjobs=tuple(sorted(existing)))
    apply = [m for m in wanted if unless_current(m, existing.get(m["metadata"]["name"])) is not None]
    keep = {m["metadata"]["name"] for m in wanted}
    drift = _drift_status(mset, gs, inputs)
    conditions = set_conditions(status.conditions, [_want(drift, check.schedule)], generation, second(now))
    conditions.sort(key=lambda c: c.type == CONDITION)  # after the rollout's own conditions
    status = status.model_copy(update={"drift": drift, "conditions": conditions})
    old = mset.status.drift if mset.status else None
    return replace(
        decision,
        status=status,
        events=(*decision.events, *_events(old, drift)),
        apply_cronjobs=tuple(apply),
        delete_cronjobs=tuple(sorted(set(existing) - keep)),
    )
