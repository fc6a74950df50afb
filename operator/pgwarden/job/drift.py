"""`pgwarden job drift`: a DatabaseMigrationSet's read-only drift check of a few dozen of its targets.

Each target's credentials arrive under names of its own (PGWARDEN_TARGET_<i>_URI, ..._HOST, ...; the
reference's under PGWARDEN_REFERENCE_*), straight from its Secret by `secretKeyRef`: the operator never reads
them, and no target inherits another's (the pod has no PGHOST or PGPASSWORD that libpq would fall back on).
Nothing is written to any database: every session is read only. Each difference is a line of the log; the
report counts the targets and names those not in sync.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import conninfo

from pgwarden.api.fleet_drift import (
    DriftCounts,
    DriftReference,
    DriftReport,
    DriftTask,
    DriftVerdict,
    TargetDrift,
)
from pgwarden.api.reports import ErrorInfo, Outcome
from pgwarden.api.task import DATABASE_SECRET_KEYS, Task, target_env
from pgwarden.engine.migrate.drift_check import Reference, judge, read_schema
from pgwarden.engine.postgres.pgerror import describe_error
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import redact, register_secret, register_url
from pgwarden.streams import progress

Report = dict[str, Any]
CONNECTIONS = 4  # targets checked at once: a few short catalog reads each
# The verdicts listed in the report, in this order (the rest are counted as in sync).
LISTED = (DriftVerdict.DRIFTED, DriftVerdict.UNREACHABLE, DriftVerdict.NOT_MIGRATED)


def target_url(index: int | None) -> str | None:
    """The connection string of target `index` (None: the reference) from its own env vars; None when its
    Secret has neither `uri` nor `host`/`dbname`."""
    values = {key: os.environ.get(target_env(index, key), "").strip() for key in DATABASE_SECRET_KEYS}
    register_url(values["uri"])
    register_secret(values["password"])
    if values["uri"]:
        return values["uri"]
    if not (values["host"] or values["dbname"]):
        return None
    return conninfo.make_conninfo(**{key: value for key, value in values.items() if key != "uri" and value})


def _unreachable(target: str, why: str) -> TargetDrift:
    return TargetDrift(target=target, verdict=DriftVerdict.UNREACHABLE, message=redact(why))


def check_target(index: int, target: str, task: DriftTask, reference: Reference | None) -> TargetDrift:
    """One target's verdict; every difference behind it goes to the log."""
    url = target_url(index)
    if url is None:
        return _unreachable(target, f"Secret {target!r} has neither the key 'uri' nor 'host' and 'dbname'")
    try:
        live = read_schema(url, schema=task.history_schema)
    except PgwardenError as exc:
        return _unreachable(target, exc.message)
    except psycopg.Error as exc:
        return _unreachable(target, f"the database refused: {describe_error(exc)}")
    verdict, differences = judge(target, live, reference)
    progress(f"{target}: {verdict.verdict}" + (f": {verdict.message}" if verdict.message else ""))
    for difference in differences:
        progress(f"{target}: {difference.kind} {difference.object}: {difference.detail}")
    return verdict


def read_reference(task: DriftTask) -> tuple[Reference | None, DriftReference | None]:
    """The reference target's recorded state (what the set's version gives), and what the report says of it."""
    name = task.reference
    if name is None:
        return None, None
    url = target_url(None)
    try:
        if url is None:
            raise BadInput(f"Secret {name!r} has neither the key 'uri' nor 'host' and 'dbname'")
        recorded = read_schema(url, schema=task.history_schema).recorded
    except PgwardenError as exc:
        return None, DriftReference(target=name, message=f"not read, so not compared with: {exc.message}")
    except psycopg.Error as exc:
        return None, DriftReference(target=name, message=f"not read: {describe_error(exc)}")
    if recorded is None:
        return None, DriftReference(target=name, message="no migration run recorded there yet")
    described = DriftReference(target=name, version=recorded.version, fingerprint=recorded.fingerprint)
    return (name, recorded), described


def run_drift(task: Task, _url: str) -> Report:
    """Check every target of the task; Failed only when no target could be read at all."""
    spec = task.drift
    if spec is None or not spec.targets:
        raise BadInput("the drift task names no targets")
    reference, described = read_reference(spec)
    with ThreadPoolExecutor(max_workers=CONNECTIONS, thread_name_prefix="pgwarden-drift") as pool:
        verdicts = list(
            pool.map(lambda item: check_target(item[0], item[1], spec, reference), enumerate(spec.targets))
        )
    counted = {verdict: sum(1 for v in verdicts if v.verdict == verdict) for verdict in DriftVerdict}
    counts = DriftCounts(
        targets=len(verdicts),
        in_sync=counted[DriftVerdict.IN_SYNC],
        drifted=counted[DriftVerdict.DRIFTED],
        unchecked=counted[DriftVerdict.UNREACHABLE] + counted[DriftVerdict.NOT_MIGRATED],
    )
    findings = sorted(
        (v for v in verdicts if v.verdict in LISTED), key=lambda v: (LISTED.index(v.verdict), v.target)
    )
    report = DriftReport(outcome=Outcome.SUCCEEDED, counts=counts, findings=findings, reference=described)
    if counted[DriftVerdict.UNREACHABLE] == len(verdicts):
        report.outcome = Outcome.FAILED
        report.error = ErrorInfo(message=f"no target could be read: {findings[0].message}")
    progress(
        f"drift: {counts.targets} target(s): {counts.in_sync} in sync, {counts.drifted} drifted, "
        f"{counts.unchecked} not checked"
    )
    return report.to_json_dict()
