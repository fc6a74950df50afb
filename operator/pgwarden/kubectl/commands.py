"""The commands of `kubectl pgwarden`: each reads what it needs through `Client`, prints through `views`,
and returns the exit code (0 done, 1 the run failed or the API refused)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.kubectl import views
from pgwarden.kubectl.client import TASK_LABEL, Client, PluginError

Obj = dict[str, Any]
KINDS = ("DatabaseMigration", "DatabaseBackup", "DatabaseRestore")
POLL_SECONDS = 2.0


def status(client: Client, name: str | None, all_namespaces: bool, out: TextIO) -> int:
    now = views.now()
    if name:
        print(views.detail(client.find(name), now), file=out)
        return 0
    resources = [r for kind in KINDS for r in client.list_resources(kind, all_namespaces)]
    if not resources:
        print(
            f"No pgwarden resources in {'any namespace' if all_namespaces else client.namespace}.", file=out
        )
        return 0
    rows = [views.status_row(r, now) for r in resources]
    header: tuple[str, ...] = views.STATUS_HEADER
    if all_namespaces:
        header = ("NAMESPACE", *header)
        rows = [[str(r["metadata"].get("namespace")), *row] for r, row in zip(resources, rows, strict=True)]
    print(views.table(header, rows), file=out)
    return 0


def approve(client: Client, name: str, yes: bool, out: TextIO, ask: Callable[[str], str] = input) -> int:
    migration = client.find(name, ("DatabaseMigration",))
    try:
        approval = views.approval_of(migration)
    except views.NotAwaitingApproval as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(approval.summary(name, client.namespace), file=out)
    if not yes:
        try:
            answer = ask(
                f"Approve generation {approval.generation} of {name} (these files run as shown)? [y/N] "
            )
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not approved", file=out)
            return 1
    client.annotate("DatabaseMigration", name, APPROVED_ANNOTATION, approval.value)
    print(f"approved: {approval.annotation}", file=out)
    return 0


def run_now(client: Client, name: str, drill: bool, wait: bool, timeout: float, out: TextIO) -> int:
    """A Job from the DatabaseBackup's CronJob (its backups', or its drills'), followed to its end."""
    backup = client.find(name, ("DatabaseBackup",))
    what = "drill" if drill else "backup"
    cronjobs = [
        c
        for c in client.owned_by(backup["metadata"]["uid"], "cronjobs")
        if ((c["metadata"].get("labels") or {}).get(TASK_LABEL) == "drill") == drill
    ]
    if not cronjobs:
        needs = "verify.schedule (restore drills)" if drill else "a schedule"
        raise PluginError(f"DatabaseBackup {name} has no {what} CronJob: it needs {needs}")
    job = client.job_from_cronjob(cronjobs[0])
    job_name = job["metadata"]["name"]
    print(f"job.batch/{job_name} created", file=out)
    if not wait:
        return 0
    recorded = _recorded_drill if drill else _recorded_backup
    entry = _follow(client, "DatabaseBackup", name, lambda r: recorded(r, job_name), timeout, job_name, out)
    print(f"{what} {entry.get('outcome')}: {entry.get('message') or ''}".rstrip(), file=out)
    return 0 if entry.get("outcome") == "Succeeded" else 1


def _recorded_backup(resource: Obj, job: str) -> Obj | None:
    history = (resource.get("status") or {}).get("history") or []
    return next((run for run in history if run.get("job") == job and run.get("outcome")), None)


def _recorded_drill(resource: Obj, job: str) -> Obj | None:
    drill = (resource.get("status") or {}).get("lastVerifiedBackup") or {}
    return drill if drill.get("job") == job and drill.get("outcome") else None


def restore(
    client: Client,
    backup: str,
    secret: str,
    backup_id: str | None,
    options: Obj,
    wait: bool,
    timeout: float,
    out: TextIO,
) -> int:
    """A DatabaseRestore of `backup` into the database of Secret `secret`, followed to its end."""
    client.find(backup, ("DatabaseBackup",))
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = options.pop("name", None) or f"{backup[:40]}-restore-{stamp}"
    manifest = {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseRestore",
        "metadata": {"name": name, "namespace": client.namespace},
        "spec": {
            "database": {"secretRef": {"name": secret}},
            "source": {"backupRef": {"name": backup, "id": backup_id or "latest"}},
            **options,
        },
    }
    client.create_resource(manifest)
    print(f"databaserestore.pgwarden.io/{name} created", file=out)
    if not wait:
        return 0
    status = _follow(client, "DatabaseRestore", name, lambda r: _terminal(r), timeout, None, out)
    print(f"restore {status.get('phase')}: {status.get('message') or ''}".rstrip(), file=out)
    return 0 if status.get("phase") == "Succeeded" else 1


def _terminal(resource: Obj) -> Obj | None:
    status = resource.get("status") or {}
    return status if status.get("phase") in views.TERMINAL else None


def _follow(
    client: Client,
    kind: str,
    name: str,
    done: Callable[[Obj], Obj | None],
    timeout: float,
    job: str | None,
    out: TextIO,
) -> Obj:
    """Poll the resource until `done` finds the outcome in its status, printing each new phase or Job state."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        resource = client.get_resource(kind, name)
        if resource is None:
            raise PluginError(f"{kind} {name} was deleted while it was followed")
        found = done(resource)
        if found is not None:
            return found
        status = resource.get("status") or {}
        state = views.job_state(client.get_job(job)) if job else None
        line = f"{kind} {name}: {status.get('phase') or 'Pending'}" + (
            f", Job {job} {state}" if state else ""
        )
        if line != said:
            print(f"  {line}", file=out, flush=True)
            said = line
        if time.monotonic() > deadline:
            raise PluginError(
                f"{kind} {name} did not finish within {timeout:g}s; follow it with: kubectl pgwarden status {name}"
            )
        time.sleep(POLL_SECONDS)


def history(client: Client, name: str, kind: str | None, out: TextIO) -> int:
    resource = client.find(name, (kind,) if kind else KINDS)
    now = views.now()
    runs = views.runs_of(resource, now)
    print("Runs (from status):", file=out)
    print(
        views.table(("RUN", "OUTCOME", "ENDED", "TOOK", "DETAIL"), runs) if runs else "  none yet", file=out
    )
    jobs = client.owned_by(resource["metadata"]["uid"])
    print("\nJobs:", file=out)
    rows = [views.job_row(job, now) for job in jobs]
    print(views.table(("NAME", "TASK", "STATUS", "STARTED", "TOOK"), rows) if rows else "  none", file=out)
    return 0


def logs(client: Client, name: str, kind: str | None, tail: int | None, out: TextIO) -> int:
    resource = client.find(name, (kind,) if kind else KINDS)
    jobs = client.owned_by(resource["metadata"]["uid"])
    if not jobs:
        raise PluginError(f"{resource['kind']} {name} has no Job yet")
    job = jobs[-1]["metadata"]["name"]
    pods = client.pods_of_job(job)
    if not pods:
        raise PluginError(f"Job {job} has no Pod (yet, or any longer)")
    print(f"==> job/{job} pod/{pods[-1]['metadata']['name']}", file=out)
    out.write(client.pod_log(pods[-1]["metadata"]["name"], "pgwarden", tail))
    return 0
