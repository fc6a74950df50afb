"""Job and Pod objects as the apiserver returns them, in the states a run goes through."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def job(
    name: str,
    *,
    state: str = "active",
    reason: str | None = None,
    generation: int = 1,
    task: str | None = None,
) -> Obj:
    """A Job as the API server returns it; `task`: the pgwarden.io/task label of a drill, drift or recovery Job."""
    conditions: list[Obj] = []
    status: Obj = {"startTime": "2025-03-01T11:59:00Z"}
    if state == "complete":
        conditions.append({"type": "Complete", "status": "True"})
        status["completionTime"] = "2025-03-01T11:59:30Z"
    elif state == "failed":
        conditions.append(
            {
                "type": "Failed",
                "status": "True",
                "reason": reason or "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2025-03-01T11:59:40Z",
            }
        )
    status["conditions"] = conditions
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": "2025-03-01T11:58:59Z",
            "labels": {"pgwarden.io/generation": str(generation)}
            | ({"pgwarden.io/task": task} if task else {}),
        },
        "status": status,
    }


def pod(*, terminated: Obj | None = None, waiting: Obj | None = None, phase: str = "Running") -> Obj:
    state: Obj = {}
    if terminated is not None:
        state["terminated"] = terminated
    elif waiting is not None:
        state["waiting"] = waiting
    else:
        state["running"] = {"startedAt": "2025-03-01T11:59:01Z"}
    return {
        "metadata": {"name": "p", "creationTimestamp": "2025-03-01T11:59:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"name": "pgwarden", "state": state}]},
    }


def finished_pod(report: Obj | None, *, exit_code: int = 0, text: str | None = None) -> Obj:
    message = json.dumps(report) if report is not None else text
    terminated: Obj = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
    if message:
        terminated["message"] = message
    return pod(terminated=terminated, phase="Succeeded" if exit_code == 0 else "Failed")


MIGRATION_SUCCEEDED: Obj = {
    "outcome": "Succeeded",
    "database": "shop@db:5432/shop",
    "currentVersion": "0004",
    "tables": {"before": 0, "after": 2},
    "rows": {"before": 0, "after": 2},
    "rowCounts": "exact",
    "rowChanges": [{"table": "public.customers", "before": None, "after": 2}],
    "applied": [
        {"version": "0001", "description": "create customers", "checksum": "a" * 64, "durationMs": 5},
        {"version": "0002", "description": "create orders", "checksum": "b" * 64, "durationMs": 4},
        {"version": "0003", "description": "orders by customer", "checksum": "c" * 64, "durationMs": 3},
        {"version": "0004", "description": "seed customers", "checksum": "d" * 64, "durationMs": 2},
    ],
    "pending": [],
    "warnings": ["0003 runs outside a transaction"],
    "lint": [
        {
            "rule": "require-concurrent-index-creation",
            "file": "0003_orders_by_customer.sql",
            "line": 1,
            "message": "During normal index creation, table updates are blocked, but reads are still allowed.",
        }
    ],
    "verification": {"passed": True, "checks": [{"name": "seed customers present", "passed": True}]},
    "drift": {"detected": False, "differences": []},
    "startedAt": "2025-03-01T11:59:02+00:00",
    "completedAt": "2025-03-01T11:59:03+00:00",
    "durationSeconds": 1.2,
}

MIGRATION_ROLLED_BACK: Obj = {
    "outcome": "RolledBack",
    "currentVersion": None,
    "tables": {"before": 0, "after": 0},
    "rows": {"before": 0, "after": 0},
    "applied": [],
    "pending": ["0001", "0002"],
    "error": {"message": 'column "price" of relation "items" contains null values', "migration": "0002"},
    "rollback": {
        "strategy": "transaction",
        "outcome": "Succeeded",
        "message": "the transaction was rolled back",
    },
    "durationSeconds": 0.4,
}

BACKUP_SUCCEEDED: Obj = {
    "outcome": "Succeeded",
    "backup": {
        "id": "20250301T115900Z",
        "location": "s3://pgwarden-backups/shop/20250301T115900Z",
        "sizeBytes": 123456,
        "sha256": "e" * 64,
        "verified": True,
    },
    "tables": 3,
    "rows": 1200,
    "startedAt": "2025-03-01T11:59:00Z",
    "completedAt": "2025-03-01T11:59:20Z",
    "durationSeconds": 20.0,
    "retained": 4,
}


def written(decision: Any) -> Any:
    """The decision with its status as the JSON the operator writes to the resource, as the tests read it."""
    return dataclasses.replace(decision, status=decision.status.to_status())


def task_of(manifest: Obj) -> Any:
    """The task a Job manifest carries to `pgwarden job` (PGWARDEN_TASK)."""
    from pgwarden.api.task import TASK_ENV, Task

    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    return Task.model_validate_json(next(item["value"] for item in env if item["name"] == TASK_ENV))


def creates_no_run(decision: Any) -> bool:
    """Nothing runs: no Job is created, or only the read-only preview that plans and lints a Manual
    migration awaiting approval."""
    return decision.create is None or bool(task_of(decision.create).plan_only)
