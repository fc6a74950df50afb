"""What only a real node shows: pgwarden's image run by containerd and runc under the kubelet.

A container killed for memory, a Job stopped at its deadline and a run that fails must each reach the
resource's status as what happened; the client tools in the image must work against the newest server; the
report `pgwarden job` writes to /dev/termination-log must reach the status through the kubelet.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    in_namespace,
    resource,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def job_pods(kube: LocalCluster, namespace: str, job: str) -> list[Obj]:
    return kube.get_all("pods", namespace, "-l", f"job-name={job}")


def runner_state(kube: LocalCluster, namespace: str, job: str) -> Obj:
    """The last state of the Job's `pgwarden` container, as the kubelet reported it."""
    (pod,) = job_pods(kube, namespace, job)
    (status,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == "pgwarden"]
    return dict(status["state"])


def migration(sql: str, **spec: Any) -> Obj:
    return {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"inline": [{"name": "0001_work.sql", "sql": sql}]},
        **spec,
    }


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_a_run_killed_for_memory_is_failed_with_its_exit_code_and_changes_nothing(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec = migration(
        "CREATE TABLE t (id int);",
        # Python and pgwarden's imports alone need more: the kernel kills the container (cgroup limit).
        jobTemplate={"resources": {"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}}},
    )
    ns = operator.namespace
    kube.apply(*in_namespace(ns, secret("db", uri=url), resource("DatabaseMigration", "starved", spec)))

    # No report: the operator's recovery Job runs (and, under the same limit, is killed too) before the phase.
    status = wait_status(
        kube, operator, "dbmig", "starved", lambda s: s.get("phase") in TERMINAL, timeout=300
    )
    state = runner_state(kube, ns, status["job"])
    assert state["terminated"]["reason"] == "OOMKilled", state
    assert state["terminated"]["exitCode"] == 137
    assert status["phase"] == "Failed", status
    assert "OOMKilled, exit code 137" in status["message"], status["message"]
    assert "t" not in tables(url)


def run_past_its_deadline(kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres) -> tuple[Obj, str]:
    """A migration sleeping past its Job's activeDeadlineSeconds: (its final status, its database's URL).

    25 s: long enough for the container to start and begin the run on a busy machine (a pod stopped while
    Python still starts leaves no report, and the status then names the deadline), short enough to wait for.
    """
    url = pg.create_database()
    spec = migration(
        "SELECT pg_sleep(120);\nCREATE TABLE t (id int);", jobTemplate={"activeDeadlineSeconds": 25}
    )
    ns = operator.namespace
    kube.apply(*in_namespace(ns, secret("db", uri=url), resource("DatabaseMigration", "slow", spec)))
    # A run stopped before it could report is recovered by one more Job first: allow for it.
    status = wait_status(kube, operator, "dbmig", "slow", lambda s: s.get("phase") in TERMINAL, timeout=300)
    job = kube.get("job", status["job"], ns)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded", job["status"]
    return status, url


def test_a_run_past_its_deadline_is_stopped_and_its_status_is_truthful(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    status, url = run_past_its_deadline(kube, operator, pg)
    assert "t" not in tables(url)
    if status["phase"] == "RolledBack":  # the usual path: the kubelet's SIGTERM ends the run with a report
        assert status["rollback"]["outcome"] == "Succeeded"
        assert "stopped by SIGTERM while applying 0001" in status["message"], status["message"]
    else:  # stopped before the run began (a slow start): no report, and the status names the deadline
        assert status["phase"] == "Failed", status
        assert "activeDeadlineSeconds" in status["message"], status["message"]


def test_a_run_stopped_at_its_deadline_says_so_in_its_status(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    status, _ = run_past_its_deadline(kube, operator, pg)
    # Whether the run began before its deadline (RolledBack, with a report) depends on the machine's load;
    # either way the status must name the deadline.
    assert status["phase"] in ("RolledBack", "Failed"), status
    assert "activeDeadlineSeconds" in status["message"], status["message"]


def test_a_failed_run_exits_non_zero_and_its_report_reaches_status_through_the_kubelet(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec = migration("CREATE TABLE items (sku text PRIMARY KEY);\nALTER TABLE items ADD COLUMN price numrc;")
    ns = operator.namespace
    kube.apply(*in_namespace(ns, secret("db", uri=url), resource("DatabaseMigration", "typo", spec)))

    status = wait_status(kube, operator, "dbmig", "typo", lambda s: s.get("phase") in TERMINAL)
    state = runner_state(kube, ns, status["job"])["terminated"]
    assert state["exitCode"] == 1, state  # the CLI contract: 1, the operation failed (after rollback)
    report = json.loads(state["message"])  # the report `pgwarden job` wrote to /dev/termination-log
    assert report["outcome"] == status["phase"] == "RolledBack"
    assert "numrc" in report["error"]["message"] and "numrc" in status["message"]
    assert status["rollback"]["outcome"] == "Succeeded"
    assert tables(url) == set()


PG_TOOLS_SCRIPT = """
set -eu
bin=$PGWARDEN_PG_BIN
server=$("$bin/psql" -X -At -d "$SOURCE" -c 'SHOW server_version_num')
"$bin/pg_dump" --format=custom --file=/scratch/shop.dump "$SOURCE"
"$bin/pg_restore" --no-owner --exit-on-error --dbname="$TARGET" /scratch/shop.dump
rows=$("$bin/psql" -X -At -d "$TARGET" -c 'SELECT count(*) FROM orders')
echo "server=$server dump=$("$bin/pg_dump" --version) restore=$("$bin/pg_restore" --version) rows=$rows" \\
  | tee /dev/termination-log
"""


def test_pg_dump_pg_restore_and_psql_in_the_image_work_against_the_newest_server(
    kube: LocalCluster, namespace: str, pg: LocalPostgres
) -> None:
    assert pg.install.major >= 18, f"the newest server here is {pg.version}"
    source, target = pg.create_database(), pg.create_database()
    seed(source, rows=40)
    env = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": "urls", "key": name.lower()}}}
        for name in ("SOURCE", "TARGET")
    ]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pg-tools", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 120,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "tools",
                            "image": kube.image,
                            "imagePullPolicy": "Never",
                            "command": ["bash", "-c", PG_TOOLS_SCRIPT],
                            "env": env,
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                }
            },
        },
    }
    kube.apply(*in_namespace(namespace, secret("urls", source=source, target=target)), job)

    def finished() -> Obj | None:
        pods = job_pods(kube, namespace, "pg-tools")
        state = pods[0]["status"].get("containerStatuses", [{}])[0].get("state", {}) if pods else {}
        return state.get("terminated")

    terminated = kube.wait_for("the pg-tools Job", finished, timeout=150, interval=1)
    logs = kube.kubectl("logs", "-n", namespace, "job/pg-tools", check=False)
    assert terminated["exitCode"] == 0, f"{terminated}\n{logs.stdout}{logs.stderr}"
    found = re.fullmatch(
        r"server=(\d+) dump=pg_dump \(PostgreSQL\) (\d+)\.\S* restore=pg_restore \(PostgreSQL\) (\d+)\.\S* rows=(\d+)",
        terminated["message"].strip(),
    )
    assert found, terminated["message"]
    server, dump, restore, rows = (int(value) for value in found.groups())
    assert server // 10000 == dump == restore >= 18
    assert rows == 80
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (40,)
