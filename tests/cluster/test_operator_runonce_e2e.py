"""Run-once promises of the operator, end to end on the local control plane: what was approved is what runs.

The operator, its fixtures and the helpers live in operator_support.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    chart_operator,
    events,
    in_namespace,
    migrations_configmap,
    resource,
    run_jobs,
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

REVIEWED = {"0001_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY);"}
EDITED = {**REVIEWED, "0002_drop.sql": "DROP TABLE orders; CREATE TABLE edited_in (id int);"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(row[0]) for row in rows}


def test_a_configmap_edited_after_approval_runs_nothing_until_its_files_are_approved(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    ns = operator.namespace
    spec: Obj = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"configMapRefs": [{"name": "files"}]},
        "approval": "Manual",
        "policy": {"allowDestructive": True},
    }
    kube.apply(
        *in_namespace(
            ns,
            secret("db", uri=url),
            migrations_configmap("files", REVIEWED),
            resource("DatabaseMigration", "gated", spec),
        )
    )
    status = wait_status(kube, operator, "dbmig", "gated", lambda s: s.get("phase") == "AwaitingApproval")
    reviewed = status["approval"]
    assert [f["name"] for f in reviewed["files"]] == ["0001_orders.sql"]
    assert f"pgwarden.io/approved=1-{reviewed['digest']} --overwrite" in status["message"]

    # Approved, then edited before the operator acted on the approval: nothing runs.
    operator.stop()
    kube.kubectl("annotate", "dbmig", "gated", f"pgwarden.io/approved=1-{reviewed['digest']}", "-n", ns)
    kube.apply(*in_namespace(ns, migrations_configmap("files", EDITED)))
    operator.start()
    status = wait_status(kube, operator, "dbmig", "gated", lambda s: "changed since" in s.get("message", ""))
    assert status["phase"] == "AwaitingApproval" and run_jobs(kube, ns) == []
    edited = status["approval"]
    assert [f["name"] for f in edited["files"]] == ["0001_orders.sql", "0002_drop.sql"]
    assert edited["digest"] != reviewed["digest"]

    # Back to the reviewed files, approved again, then edited once the Job exists: the Job runs what was approved.
    kube.apply(*in_namespace(ns, migrations_configmap("files", REVIEWED)))
    kube.kubectl("annotate", "dbmig", "gated", "pgwarden.io/approved-", "-n", ns)
    kube.kubectl("annotate", "dbmig", "gated", f"pgwarden.io/approved=1-{reviewed['digest']}", "-n", ns)
    wait_status(kube, operator, "dbmig", "gated", lambda s: bool(s.get("job")), timeout=60)
    kube.apply(*in_namespace(ns, migrations_configmap("files", EDITED)))
    status = wait_status(kube, operator, "dbmig", "gated", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert [a["version"] for a in status["applied"]] == ["0001"]
    assert status["applied"][0]["checksum"] == reviewed["files"][0]["sha256"]
    assert tables(url) == {"orders"}  # the edit (0002) never ran
    assert len(run_jobs(kube, ns)) == 1


def lease_holder(kube: LocalCluster, namespace: str) -> str | None:
    found = kube.kubectl("get", "lease", "pgwarden-operator", "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    return str(json.loads(found.stdout)["spec"].get("holderIdentity") or "") or None


@pytest.fixture
def two_replicas(
    kube: LocalCluster, namespace: str, crds: None, helm: Path, tmp_path: Path
) -> Iterator[ChartOperator]:
    """The chart installed with `replicaCount: 2`: two operator Pods, one holding the Lease."""
    yield from chart_operator(kube, namespace, helm, tmp_path, replicas=2)


def test_killing_the_active_replica_hands_over_within_30_s_and_duplicates_no_job(
    kube: LocalCluster, two_replicas: ChartOperator, pg: LocalPostgres
) -> None:
    operator, ns = two_replicas, two_replicas.namespace
    pods = {p["metadata"]["name"] for p in operator.pods()}
    assert len(pods) == 2, pods
    # The Lease names its holder by POD_NAME: the active replica is that Pod, the other one stands by.
    active = kube.wait_for("a Lease holder", lambda: lease_holder(kube, ns), timeout=60, interval=0.5)
    assert active in pods, (active, pods)
    (standby,) = pods - {active}

    url = pg.create_database()
    # Long enough that the Job still runs while the Lease changes hands (expiry alone takes 15 s).
    slow = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {
            "inline": [{"name": "0001_slow.sql", "sql": "SELECT pg_sleep(25); CREATE TABLE t (id int);"}]
        },
    }
    kube.apply(*in_namespace(ns, secret("db", uri=url), resource("DatabaseMigration", "slow", slow)))
    running = wait_status(kube, operator, "dbmig", "slow", lambda s: bool(s.get("job")), timeout=90)
    assert "slow" not in operator.pod_log(standby), "the standby acted"
    assert "slow" in operator.pod_log(active)

    killed = time.monotonic()
    operator.kill_pod(active)

    def taken_over() -> str | None:
        now = lease_holder(kube, ns)
        return now if now and now != active else None

    new_holder = kube.wait_for("another replica to hold the Lease", taken_over, timeout=45, interval=0.5)
    taken = time.monotonic() - killed
    # The new leader acts: a resource applied after the kill gets its status from it.
    kube.apply(*in_namespace(ns, resource("DatabaseMigration", "after", {**slow, "approval": "Manual"})))
    wait_status(kube, operator, "dbmig", "after", lambda s: s.get("phase") == "AwaitingApproval", timeout=45)
    handover = time.monotonic() - killed
    print(
        f"handover: Lease taken by {new_holder} {taken:.1f} s after kill -9 of {active}, "
        f"acting after {handover:.1f} s"
    )
    # The standby, or the Pod the Deployment made in place of the killed one: either may win the Lease.
    assert new_holder in {p["metadata"]["name"] for p in operator.pods()}, new_holder
    assert handover < 30, handover

    status = wait_status(kube, operator, "dbmig", "slow", lambda s: s.get("phase") in TERMINAL, timeout=120)
    assert status["phase"] == "Succeeded", status
    assert status["job"] == running["job"]
    slow_jobs = [j for j in kube.get_all("jobs", ns) if j["metadata"]["name"].startswith("slow-")]
    assert [j["metadata"]["name"] for j in slow_jobs] == [status["job"]]  # adopted, not created twice
    assert [e["reason"] for e in events(kube, ns, "slow")].count("Started") == 1
    assert tables(url) == {"t"}


def test_a_restore_edited_after_it_ran_does_not_restore_again(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    """The defect this guards: with clean: true, a harmless edit rolled a live database back to the backup."""
    source, target = pg.create_database(), pg.create_database()
    seed(source, rows=50)
    ns = operator.namespace
    backup = {
        "database": {"secretRef": {"name": "source-db"}},
        "storage": s3_storage(s3, s3.create_bucket(), "src/"),
    }
    restore = {
        "database": {"secretRef": {"name": "target-db"}},
        "source": {"backupRef": {"name": "src", "id": "latest"}},
        "clean": True,
    }
    kube.apply(
        *in_namespace(
            ns,
            secret("source-db", uri=source),
            secret("target-db", uri=target),
            s3_secret(s3),
            resource("DatabaseBackup", "src", backup),
            resource("DatabaseRestore", "copy", restore),
        )
    )
    status = wait_status(
        kube, operator, "dbrestore", "copy", lambda s: s.get("phase") in TERMINAL, timeout=200
    )
    assert status["phase"] == "Succeeded", status
    with psycopg.connect(target, autocommit=True) as conn:  # the restored database lives on
        conn.execute("INSERT INTO customers SELECT g, 'new' FROM generate_series(1001, 1010) g")

    # The one field that may change (it does not define what is restored) makes a new generation.
    kube.kubectl(
        "patch",
        "dbrestore",
        "copy",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"jobTemplate": {"activeDeadlineSeconds": 600}}}),
    )
    status = wait_status(kube, operator, "dbrestore", "copy", lambda s: s.get("observedGeneration") == 2)
    assert status["phase"] == "Succeeded"
    time.sleep(5)  # time for a second Job, were one to come
    restore_jobs = [j for j in kube.get_all("jobs", ns) if j["metadata"]["name"].startswith("copy-")]
    assert [j["metadata"]["name"] for j in restore_jobs] == [status["job"]]
    assert [e["reason"] for e in events(kube, ns, "copy")].count("Started") == 1
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM customers WHERE name = 'new'").fetchone() == (10,)
