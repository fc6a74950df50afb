"""A DatabaseMigration rehearsed before it is approved, end to end on the local cluster: the operator runs the
rehearsal Job (restore a DatabaseBackup's backup into a scratch database, run the plan there, sample the
locks), status.rehearsal shows what it found while the migration awaits approval, the scratch database is gone
and the database untouched; the approval then runs the real migration.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    assert_never_shown,
    events,
    in_namespace,
    resource,
    s3_secret,
    s3_storage,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def _scratch_databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%\\_pgw\\_rehearsal\\_%'")
        return [row[0] for row in rows.fetchall()]


def test_a_manual_migration_shows_its_rehearsal_while_awaiting_approval(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url, rows=100)
    bucket = s3.create_bucket()
    ns = operator.namespace
    backup = {"database": {"secretRef": {"name": "shop-db"}}, "storage": s3_storage(s3, bucket, "shop/")}
    migration: Obj = {
        "database": {"secretRef": {"name": "shop-db"}},
        "migrations": {
            "inline": [{"name": "0001_note.sql", "sql": "ALTER TABLE customers ADD COLUMN note text;"}]
        },
        "rehearsal": {"backupRef": {"name": "shop-backup"}, "maxLockHold": "30s", "required": True},
        "approval": "Manual",
    }
    # The migration first: it waits for its DatabaseBackup's first backup, then rehearses on it.
    kube.apply(
        *in_namespace(
            ns,
            secret("shop-db", uri=url),
            s3_secret(s3),
            resource("DatabaseMigration", "rehearsed", migration),
            resource("DatabaseBackup", "shop-backup", backup),
        )
    )
    status = wait_status(
        kube, operator, "dbmig", "rehearsed", lambda s: s.get("phase") == "AwaitingApproval", timeout=300
    )
    rehearsal = status["rehearsal"]
    assert rehearsal["outcome"] == "Succeeded", status
    assert rehearsal["generation"] == 1 and rehearsal["durationSeconds"] > 0
    assert rehearsal["backup"].startswith(f"s3://{bucket}/shop/")
    assert [(a["version"], "durationMs" in a) for a in rehearsal["applied"]] == [("0001", True)]
    assert rehearsal["maxLockHoldSeconds"] == 30
    assert any(
        lock["mode"] == "AccessExclusiveLock" and lock["relation"] == "customers" and lock["heldSeconds"] >= 0
        for lock in rehearsal["locks"]
    ), rehearsal["locks"]
    assert "rehearsal Succeeded" in status["message"] and "pgwarden.io/approved=1" in status["message"]
    assert "Rehearsed" in {e["reason"] for e in events(kube, ns, "rehearsed")}
    # The scratch copy is gone, the database as it was; only the rehearsal Job (and the backup's) ran.
    assert _scratch_databases(url) == []
    assert _columns(url) == ["id", "name"]
    migration_jobs = [j for j in kube.get_all("jobs", ns) if j["metadata"]["name"].startswith("rehearsed-")]
    assert [j["metadata"]["name"].split("-")[1] for j in migration_jobs] == ["rehearse"]

    kube.kubectl("annotate", "dbmig", "rehearsed", "pgwarden.io/approved=1", "--overwrite", "-n", ns)
    status = wait_status(kube, operator, "dbmig", "rehearsed", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert status["rehearsal"] == rehearsal, "the run does not rehearse again"
    assert _columns(url) == ["id", "name", "note"]
    assert _scratch_databases(url) == []
    assert_never_shown(kube, operator, pg.password, s3.secret_key)


@pytest.mark.parametrize(
    ("rehearsal", "refusal"),
    [
        ({"maxLockHold": "2s"}, "rehearsal needs exactly one of backupRef or location"),
        (
            {"backupRef": {"name": "b"}, "location": "x", "storage": {"volume": {"claimName": "c"}}},
            "rehearsal needs exactly one of backupRef or location",
        ),
        ({"location": "x"}, "rehearsal.location needs rehearsal.storage"),
        ({"backupRef": {"name": "b"}, "maxLockHold": "2 seconds"}, "maxLockHold"),
    ],
)
def test_the_apiserver_refuses_a_rehearsal_without_exactly_one_backup(
    kube: LocalCluster, crds: None, namespace: str, rehearsal: Obj, refusal: str
) -> None:
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"inline": [{"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"}]},
        "rehearsal": rehearsal,
    }
    manifest = in_namespace(namespace, resource("DatabaseMigration", "refused", spec))[0]
    result = kube.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and refusal in result.stderr, result.stderr
    assert kube.get_all("databasemigrations", namespace) == []
