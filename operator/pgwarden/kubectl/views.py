"""What `kubectl pgwarden` prints, from resources as the API server returns them: pure, no API calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgwarden.api.common import APPROVED_ANNOTATION

Obj = dict[str, Any]
SHORT = {"DatabaseMigration": "dbmig", "DatabaseBackup": "dbbackup", "DatabaseRestore": "dbrestore"}
TERMINAL = ("Succeeded", "Failed", "RolledBack", "Cancelled")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_age(moment: datetime | None, now: datetime) -> str:
    """How long ago, as kubectl prints ages: 45s, 12m, 5h, 3d."""
    if moment is None:
        return "-"
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size, from_ in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if seconds >= from_:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_size(size: int | None) -> str:
    """Bytes in IEC units, as the operator prints them (3.1 KiB)."""
    from pgwarden.operator.backups import human_size as operator_human_size  # the project's one (IEC)

    return operator_human_size(size) if size is not None else "-"


def _condition(status: Obj, kind: str) -> Obj:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def next_step(resource: Obj, now: datetime) -> str:
    """What to do next about a resource, in a few words (a command where there is one)."""
    kind, name = str(resource.get("kind")), str(resource["metadata"]["name"])
    status = resource.get("status") or {}
    phase = status.get("phase")
    if phase == "AwaitingApproval":
        return f"review, then: kubectl pgwarden approve {name}"
    if phase in ("Failed", "RolledBack"):
        return f"read its message; kubectl pgwarden logs {name}"
    if phase == "Cancelled":
        return (
            "its Job was deleted; change the spec to run again"
            if kind != "DatabaseRestore"
            else "create a new restore"
        )
    if phase in ("Running", "Rehearsing"):
        return f"running: kubectl pgwarden logs {name}"
    if phase == "Pending":
        reason = _condition(status, "Ready").get("reason")
        return f"waiting ({reason})" if reason else "waiting"
    if kind == "DatabaseBackup":
        return _backup_next(resource, now)
    return "-"


def _backup_next(resource: Obj, now: datetime) -> str:
    name = resource["metadata"]["name"]
    status = resource.get("status") or {}
    stale = _condition(status, "Stale")
    drill = status.get("lastVerifiedBackup") or {}
    if drill.get("outcome") == "Failed" or stale.get("reason") == "NoRecentVerifiedRestore":
        return f"restore drill failed or overdue: kubectl pgwarden drill {name} --now"
    if stale.get("status") == "True":
        return f"no recent backup: kubectl pgwarden backup {name} --now"
    due = parse_time(status.get("nextScheduleTime"))
    if due is not None and due > now:
        return f"next backup in {human_age(now, due)}"
    return "-"


def status_row(resource: Obj, now: datetime) -> list[str]:
    """KIND NAME PHASE VERSION LAST-BACKUP VERIFIED NEXT for one resource."""
    kind = str(resource.get("kind"))
    status = resource.get("status") or {}
    version = last = verified = "-"
    if kind == "DatabaseMigration":
        version = status.get("currentVersion") or "-"
    if kind == "DatabaseBackup":
        newest = status.get("lastBackup") or {}
        if newest:
            when = parse_time(newest.get("completedAt")) or parse_time(status.get("lastSuccessfulTime"))
            last = f"{human_age(when, now)} ago ({human_size(newest.get('sizeBytes'))})"
        if status.get("lastVerifiedTime"):
            verified = f"{human_age(parse_time(status.get('lastVerifiedTime')), now)} ago"
    return [
        SHORT.get(kind, kind),
        str(resource["metadata"]["name"]),
        str(status.get("phase") or "-"),
        version,
        last,
        verified,
        next_step(resource, now),
    ]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them (three spaces apart)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


STATUS_HEADER = ("KIND", "NAME", "PHASE", "VERSION", "LAST BACKUP", "VERIFIED", "NEXT")


def detail(resource: Obj, now: datetime) -> str:
    """One resource: its row, message and conditions."""
    status = resource.get("status") or {}
    lines = [table(STATUS_HEADER, [status_row(resource, now)]), ""]
    if status.get("message"):
        lines.append(f"Message:  {status['message']}")
    for condition in status.get("conditions") or []:
        since = human_age(parse_time(condition.get("lastTransitionTime")), now)
        lines.append(
            f"  {condition.get('type')}={condition.get('status')}  {condition.get('reason')}  ({since} ago)  "
            f"{condition.get('message', '')}".rstrip()
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Approval:
    """What `approve` would write, and what it shows first."""

    value: str
    generation: int
    source: str
    files: tuple[tuple[str, str], ...]

    @property
    def annotation(self) -> str:
        return f"{APPROVED_ANNOTATION}={self.value}"

    def summary(self, name: str, namespace: str) -> str:
        lines = [
            f"DatabaseMigration {namespace}/{name}, generation {self.generation}",
            f"  from: {self.source}",
        ]
        lines += [f"  {sha256}  {file}" for file, sha256 in self.files]
        return "\n".join(lines)


class NotAwaitingApproval(Exception):
    """The migration has nothing to approve now; the message says why."""


def approval_of(migration: Obj) -> Approval:
    """The approval the operator asks for in status: `<generation>`, or `<generation>-<digest>` for ConfigMaps."""
    meta = migration["metadata"]
    status = migration.get("status") or {}
    shown = status.get("approval") or {}
    generation = int(meta.get("generation") or 1)
    if (migration.get("spec") or {}).get("approval") != "Manual":
        raise NotAwaitingApproval(f"{meta['name']} has approval: Automatic; nothing to approve")
    if status.get("phase") != "AwaitingApproval" or not shown:
        raise NotAwaitingApproval(
            f"{meta['name']} is {status.get('phase') or 'not reconciled yet'}, not AwaitingApproval; nothing to approve"
        )
    if int(shown.get("generation") or 0) != generation:
        raise NotAwaitingApproval(
            f"status shows generation {shown.get('generation')} but the spec is at generation {generation}; "
            "wait for the operator to show what generation runs, then approve"
        )
    digest = shown.get("digest")
    return Approval(
        value=f"{generation}-{digest}" if digest else str(generation),
        generation=generation,
        source=str(shown.get("source") or ""),
        files=tuple((str(f["name"]), str(f["sha256"])) for f in shown.get("files") or []),
    )


def job_row(job: Obj, now: datetime) -> list[str]:
    """NAME TASK STATUS STARTED DURATION of one Job."""
    meta, status = job["metadata"], job.get("status") or {}
    labels = meta.get("labels") or {}
    task = labels.get("pgwarden.io/task") or labels.get("app.kubernetes.io/component") or "-"
    state = job_state(job) or ("Running" if status.get("active") else "Pending")
    started, ended = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    ended = ended or _finished_at(status)
    took = f"{int((ended - started).total_seconds())}s" if started and ended else "-"
    return [meta["name"], task, state, f"{human_age(started, now)} ago" if started else "-", took]


def _finished_at(status: Obj) -> datetime | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def job_state(job: Obj) -> str | None:
    """Complete or Failed once the Job ended, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def runs_of(resource: Obj, now: datetime) -> list[list[str]]:
    """The runs status records: JOB OUTCOME WHEN DURATION DETAIL (a backup's history, its last drill; the last
    run of a migration or restore)."""
    status = resource.get("status") or {}
    rows = []
    for run in status.get("history") or []:
        size = human_size(run.get("sizeBytes")) if run.get("sizeBytes") is not None else ""
        rows.append(
            _run(f"backup {run.get('job', '-')}", run.get("outcome"), run.get("completedAt"), run, size, now)
        )
    drill = status.get("lastVerifiedBackup")
    if drill:
        rows.append(
            _run(f"drill {drill.get('job', '-')}", drill.get("outcome"), drill.get("time"), drill, "", now)
        )
    if resource.get("kind") != "DatabaseBackup" and status.get("phase") in TERMINAL:
        rows.append(
            _run(
                str(status.get("job") or "-"), status.get("phase"), status.get("completedAt"), status, "", now
            )
        )
    return rows


def _run(job: str, outcome: object, when: object, run: Obj, extra: str, now: datetime) -> list[str]:
    duration = run.get("durationSeconds")
    detail = str(run.get("message") or extra)  # a backup's message names its size already
    return [
        job,
        str(outcome or "-"),
        f"{human_age(parse_time(when), now)} ago" if when else "-",
        f"{duration:g}s" if isinstance(duration, int | float) else "-",
        detail[:120],
    ]


def now() -> datetime:
    return datetime.now(UTC)
