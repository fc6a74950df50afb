"""A real Prometheus scraping the real operator after real runs, driven by the real `kubectl pgwarden`.

One scene for the module: the chart's operator on the real node; a Prometheus (built from its Go module,
listening on 127.0.0.1) that finds the operator through the API server's EndpointSlices by exactly the scrape
config the chart's ServiceMonitor compiles to, and evaluates the chart's PrometheusRule. Then, through the
real kubectl with kubectl-pgwarden on PATH: a ConfigMap migration approved, a backup and a drill run now, a
restore; and two migrations that fail (one rolled back, one refused). The tests read what the plugin printed,
what the cluster and the databases hold, the series Prometheus scraped, the alerts it fires, and every
dashboard panel's query.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from chart_support import CHART
from operator_support import (
    ChartOperator,
    chart_operator,
    in_namespace,
    migrations_configmap,
    resource,
    s3_secret,
    s3_storage,
    secret,
    seed,
    status_of,
    wait_status,
)
from pgwarden_testing import prometheus, s3server
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = CHART / "dashboards" / "pgwarden.json"
Obj = dict[str, Any]


@dataclass
class Scene:
    kube: LocalCluster
    operator: ChartOperator
    prometheus: prometheus.Prometheus
    env: dict[str, str]
    secrets: tuple[str, ...]
    restored_url: str
    ran: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.operator.namespace

    def plugin(
        self, *args: str, stdin: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl pgwarden ARGS` as a user runs it: the real kubectl finds kubectl-pgwarden on PATH."""
        command = [
            "kubectl",
            "pgwarden",
            *args,
            "--kubeconfig",
            str(self.kube.kubeconfig),
            "-n",
            self.namespace,
        ]
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )

    def query(self, expr: str) -> list[Obj]:
        return self.prometheus.query(expr)

    def wait_query(self, what: str, expr: str, timeout: float = 90) -> list[Obj]:
        return self.kube.wait_for(what, lambda: self.query(expr), timeout=timeout, interval=1)


def _namespace(kube: LocalCluster) -> str:
    name = f"prometheus-e2e-{secrets.token_hex(3)}"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
    )
    kube.wait_for(
        f"the default ServiceAccount in {name}",
        lambda: kube.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
    )
    return name


def _monitoring(helm: Path, namespace: str) -> tuple[Obj, Obj]:
    """The chart's ServiceMonitor and PrometheusRule for this release, rendered by helm (their CRDs are not
    on this cluster: Prometheus is given what the Prometheus Operator would make of them)."""
    rendered = subprocess.run(
        [
            str(helm),
            "template",
            "pgwarden",
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.interval=2s",
            "--set",
            "serviceMonitor.scrapeTimeout=1s",
            "--set",
            "prometheusRule.enabled=true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return monitor, rule


def _plugin_env(kube: LocalCluster) -> dict[str, str]:
    """PATH with kubectl and kubectl-pgwarden (the venv's console script); nothing else of ours."""
    path = os.pathsep.join([str(kube.bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {key: value for key, value in os.environ.items() if key != "KUBECONFIG"} | {"PATH": path}


@pytest.fixture(scope="module")
def scene(
    kube: LocalCluster,
    crds: None,
    helm: Path,
    pg: LocalPostgres,
    s3: s3server.S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    pg.serve_pods(kube.pod_gateway)
    s3.serve_pods(kube.pod_gateway)
    namespace = _namespace(kube)
    work = tmp_path_factory.mktemp("prometheus-e2e")
    monitor, rule = _monitoring(helm, namespace)
    with contextlib.ExitStack() as stack:
        operator = stack.enter_context(contextlib.contextmanager(chart_operator)(kube, namespace, helm, work))
        server = stack.enter_context(
            prometheus.running(
                work / "prometheus",
                prometheus.service_monitor_scrape_config(monitor, kube.kubeconfig),
                prometheus.rule_file(rule),
            )
        )
        scene = Scene(
            kube, operator, server, _plugin_env(kube), (pg.password, s3.secret_key), pg.create_database()
        )
        _play(scene, pg, s3)
        yield scene
        print(f"--- prometheus log ---\n{server.log_tail(30)}")
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _play(scene: Scene, pg: LocalPostgres, s3: s3server.S3Server) -> None:
    """The scenarios, each through kubectl pgwarden where a user would use it."""
    kube, namespace = scene.kube, scene.namespace
    url = pg.create_database()
    seed(url, rows=30)
    bucket = s3.create_bucket()
    yearly = "0 3 1 1 *"  # never during the test: the plugin runs them now
    kube.apply(
        *in_namespace(
            namespace,
            secret("db", uri=url),
            secret("restored-db", uri=scene.restored_url),
            s3_secret(s3),
            migrations_configmap(
                "gated-sql",
                {"0001_notes.sql": "CREATE TABLE notes (id int PRIMARY KEY, body text);"},
            ),
            resource(
                "DatabaseBackup",
                "nightly",
                {
                    "database": {"secretRef": {"name": "db"}},
                    "storage": s3_storage(s3, bucket, "nightly/"),
                    "schedule": yearly,
                    "verify": {"schedule": yearly},
                },
            ),
            resource(
                "DatabaseMigration",
                "gated",
                {
                    "database": {"secretRef": {"name": "db"}},
                    "migrations": {"configMapRefs": [{"name": "gated-sql"}]},
                    "approval": "Manual",
                },
            ),
        )
    )
    wait_status(kube, scene.operator, "dbmig", "gated", lambda s: s.get("phase") == "AwaitingApproval")
    wait_status(kube, scene.operator, "dbbackup", "nightly", lambda s: s.get("phase") == "Scheduled")
    scene.ran["approve"] = scene.plugin("approve", "gated", stdin="y\n")
    wait_status(kube, scene.operator, "dbmig", "gated", lambda s: s.get("phase") in ("Succeeded", "Failed"))
    scene.ran["backup"] = scene.plugin("backup", "nightly", "--now", "--timeout", "300")
    scene.ran["drill"] = scene.plugin("drill", "nightly", "--now", "--timeout", "300")
    scene.ran["restore"] = scene.plugin(
        "restore", "nightly", "--to", "restored-db", "--clean", "--name", "restored", "--timeout", "300"
    )
    _fail_two_migrations(scene, pg)
    scene.ran["status"] = scene.plugin("status")
    scene.ran["history"] = scene.plugin("history", "nightly")
    scene.ran["logs"] = scene.plugin("logs", "nightly")
    # Prometheus has scraped the end of it all once the restore's outcome is in.
    scene.wait_query(
        "the restore's phase in Prometheus",
        f'pgwarden_resource_phase{{kind="DatabaseRestore", namespace="{namespace}", phase="Succeeded"}}',
    )


def _fail_two_migrations(scene: Scene, pg: LocalPostgres) -> None:
    """One that fails and is rolled back (the example's required column); one refused (a destructive statement
    not allowed): Failed. Each on a database of its own: a version applied there by another would refuse it."""
    failing = {
        "inline": [
            {
                "name": "0001_items.sql",
                "sql": "CREATE TABLE items (id int PRIMARY KEY);\nINSERT INTO items VALUES (1), (2);",
            },
            {
                "name": "0002_add_required_price.sql",
                "sql": "ALTER TABLE items ADD COLUMN price numeric NOT NULL;",
            },
        ]
    }
    refused = {"inline": [{"name": "0001_drop.sql", "sql": "DROP TABLE orders;"}]}
    scratch = pg.create_database()
    seed(scratch, rows=3)
    scene.kube.apply(
        *in_namespace(
            scene.namespace,
            secret("inventory-db", uri=pg.create_database()),
            secret("scratch-db", uri=scratch),
            resource(
                "DatabaseMigration",
                "inventory",
                {"database": {"secretRef": {"name": "inventory-db"}}, "migrations": failing},
            ),
            resource(
                "DatabaseMigration",
                "destroyer",
                {"database": {"secretRef": {"name": "scratch-db"}}, "migrations": refused},
            ),
        )
    )
    for name in ("inventory", "destroyer"):
        wait_status(
            scene.kube,
            scene.operator,
            "dbmig",
            name,
            lambda s: s.get("phase") in ("Failed", "RolledBack", "Succeeded"),
        )


def _no_secret(scene: Scene, *texts: str) -> None:
    for text in texts:
        for value in scene.secrets:
            assert value not in text


# -- kubectl pgwarden, run by the real kubectl ---------------------------------------------------------


def test_kubectl_pgwarden_approves_a_configmap_migration_after_showing_its_files(scene: Scene) -> None:
    approved = scene.ran["approve"]
    assert approved.returncode == 0, approved.stderr
    status = status_of(scene.kube, "dbmig", "gated", scene.namespace)
    assert status["phase"] == "Succeeded", status
    digest = status["approval"]["digest"]
    (shown,) = status["approval"]["files"]
    assert f"{shown['sha256']}  0001_notes.sql" in approved.stdout  # shown before asking
    assert "[y/N]" in approved.stdout
    annotation = scene.kube.get("dbmig", "gated", scene.namespace)["metadata"]["annotations"][
        "pgwarden.io/approved"
    ]
    assert annotation == f"{status['approval']['generation']}-{digest}"
    assert f"approved: pgwarden.io/approved={annotation}" in approved.stdout
    # Approving again: nothing awaits approval, exit 1 and no change.
    again = scene.plugin("approve", "gated", "--yes")
    assert again.returncode == 1 and "not AwaitingApproval" in again.stderr


def test_backup_now_runs_a_job_from_the_cronjob_and_follows_it_to_its_end(scene: Scene) -> None:
    ran = scene.ran["backup"]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    job = ran.stdout.split("job.batch/", 1)[1].split()[0]
    assert "backup Succeeded" in ran.stdout
    status = status_of(scene.kube, "dbbackup", "nightly", scene.namespace)
    assert status["history"][0]["job"] == job and status["history"][0]["outcome"] == "Succeeded"
    assert status["lastBackup"]["rows"] == 90  # 30 customers, 60 orders
    owner = scene.kube.get("job", job, scene.namespace)["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["name"].startswith("nightly-backup-")


def test_drill_now_proves_the_backup_restores(scene: Scene) -> None:
    ran = scene.ran["drill"]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "drill Succeeded" in ran.stdout
    verified = status_of(scene.kube, "dbbackup", "nightly", scene.namespace)["lastVerifiedBackup"]
    assert verified["outcome"] == "Succeeded" and verified["rows"] == 90
    assert ran.stdout.split("job.batch/", 1)[1].split()[0] == verified["job"]


def test_restore_writes_a_database_restore_and_follows_it(scene: Scene) -> None:
    ran = scene.ran["restore"]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "databaserestore.pgwarden.io/restored created" in ran.stdout and "restore Succeeded" in ran.stdout
    restore = scene.kube.get("dbrestore", "restored", scene.namespace)
    assert restore["spec"]["source"]["backupRef"] == {"name": "nightly", "id": "latest"}
    assert restore["status"]["verification"]["matchesBackup"] is True
    with psycopg.connect(scene.restored_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (60,)


def test_status_history_and_logs_show_the_runs_without_a_secret(scene: Scene) -> None:
    status, history, logs = scene.ran["status"], scene.ran["history"], scene.ran["logs"]
    print(f"$ kubectl pgwarden status\n{status.stdout}\n$ kubectl pgwarden history nightly\n{history.stdout}")
    for ran in (status, history, logs):
        assert ran.returncode == 0, ran.stderr
    rows = {line.split()[1]: line for line in status.stdout.splitlines()[1:]}
    assert rows["gated"].split()[:3] == ["dbmig", "gated", "Succeeded"]
    assert "RolledBack" in rows["inventory"] and "kubectl pgwarden logs inventory" in rows["inventory"]
    assert "KiB)" in rows["nightly"] and "next backup in" in rows["nightly"]
    assert "restored" in rows
    assert "backup " in history.stdout and "drill " in history.stdout and "Complete" in history.stdout
    assert logs.stdout.startswith("==> job/") and '"outcome"' in logs.stdout  # the run's report, last line
    _no_secret(
        scene, status.stdout, history.stdout, logs.stdout, *(r.stdout + r.stderr for r in scene.ran.values())
    )


def test_the_plugin_fails_with_a_message_and_a_non_zero_exit(scene: Scene) -> None:
    missing = scene.plugin("backup", "no-such-backup", "--now")
    assert missing.returncode == 1 and "no DatabaseBackup named 'no-such-backup'" in missing.stderr
    restores_have_no_cronjob = scene.plugin("drill", "gated", "--now")
    assert restores_have_no_cronjob.returncode == 1
    context = scene.plugin("--context", "no-such-context", "status")
    assert context.returncode == 1 and "kubeconfig" in context.stderr
    usage = scene.plugin("backup", "nightly")  # --now is required
    assert usage.returncode == 2


def test_kubectl_get_shows_sizes_in_iec_units_and_times_as_ages(scene: Scene) -> None:
    shown = scene.kube.kubectl("get", "dbbackup", "nightly", "-n", scene.namespace).stdout
    header, row = shown.splitlines()
    assert header.split()[:4] == ["NAME", "SCHEDULE", "LAST", "BACKUP"]
    size = status_of(scene.kube, "dbbackup", "nightly", scene.namespace)["lastBackup"]["size"]
    assert size.endswith(("KiB", "MiB")) and size in row
    assert "VERIFIED" in header
    assert (
        str(status_of(scene.kube, "dbbackup", "nightly", scene.namespace)["lastBackup"]["sizeBytes"])
        not in row
    )


# -- Prometheus ---------------------------------------------------------------------------------------


def test_prometheus_finds_the_operator_by_the_service_monitors_config(scene: Scene) -> None:
    (target,) = [t for t in scene.prometheus.targets() if t["labels"].get("namespace") == scene.namespace]
    assert target["health"] == "up", target
    assert target["labels"]["job"] == "pgwarden-metrics"
    assert target["labels"]["endpoint"] == "metrics"
    pod = scene.operator.pod()
    assert pod is not None and target["labels"]["pod"] == pod["metadata"]["name"]
    assert target["scrapeUrl"].endswith(":9090/metrics")


def value(sample: Obj) -> float:
    return float(sample["value"][1])


def test_the_series_have_the_right_labels_and_plausible_values(scene: Scene) -> None:
    ns = scene.namespace
    (size,) = scene.query(f'pgwarden_backup_size_bytes{{namespace="{ns}", name="nightly"}}')
    assert size["metric"]["job"] == "pgwarden-metrics"  # the resource's namespace kept (honorLabels)
    last = status_of(scene.kube, "dbbackup", "nightly", ns)["lastBackup"]
    assert value(size) == last["sizeBytes"]
    (success,) = scene.query(f'pgwarden_backup_last_success_timestamp_seconds{{namespace="{ns}"}}')
    assert abs(value(success) - time.time()) < 900
    (limit,) = scene.query(f'pgwarden_backup_stale_after_seconds{{namespace="{ns}"}}')
    assert 700 * 86400 < value(limit) < 740 * 86400  # twice a yearly schedule's interval
    (restore_time,) = scene.query(f'pgwarden_backup_verified_restore_seconds{{namespace="{ns}"}}')
    assert 0 < value(restore_time) < 300
    (drill,) = scene.query(f'pgwarden_last_run_succeeded{{kind="drill", namespace="{ns}"}}')
    assert value(drill) == 1
    phases = {
        s["metric"]["name"]: s["metric"]["phase"]
        for s in scene.query(f'pgwarden_resource_phase{{kind="DatabaseMigration", namespace="{ns}"}}')
    }
    assert phases == {"gated": "Succeeded", "inventory": "RolledBack", "destroyer": "Failed"}
    runs = {
        (s["metric"]["kind"], s["metric"]["outcome"]): value(s)
        for s in scene.query('pgwarden_runs_total{job="pgwarden-metrics"}')
        if s["metric"]["namespace"] == ns
    }
    assert runs[("backup", "Succeeded")] == 1 and runs[("drill", "Succeeded")] == 1
    assert runs[("migrate", "Succeeded")] == 1 and runs[("migrate", "RolledBack")] == 1
    assert runs[("restore", "Succeeded")] == 1
    (leader,) = scene.query(f'pgwarden_operator_leader{{namespace="{ns}"}}')
    assert value(leader) == 1
    (running,) = scene.query(f'pgwarden_jobs_running{{kind="backup", namespace="{ns}"}}')
    assert value(running) == 0  # every Job has ended


def firing(scene: Scene, alert: str) -> list[Obj]:
    return [
        a for a in scene.prometheus.alerts() if a["labels"]["alertname"] == alert and a["state"] == "firing"
    ]


def test_the_failed_migration_alerts_fire_on_the_real_data(scene: Scene) -> None:
    ns = scene.namespace
    rolled_back = scene.kube.wait_for(
        "PgwardenMigrationRolledBack firing",
        lambda: [a for a in firing(scene, "PgwardenMigrationRolledBack") if a["labels"]["namespace"] == ns],
        timeout=60,
    )
    assert [a["labels"]["name"] for a in rolled_back] == ["inventory"]
    failed = [a for a in firing(scene, "PgwardenMigrationFailed") if a["labels"]["namespace"] == ns]
    assert [a["labels"]["name"] for a in failed] == ["destroyer"]
    assert failed[0]["labels"]["severity"] == "critical"
    assert failed[0]["annotations"]["summary"] == f"DatabaseMigration {ns}/destroyer failed"
    # What holds must not alert: the operator is up and leads, the backup is fresh, the drill passed.
    for quiet in (
        "PgwardenOperatorDown",
        "PgwardenOperatorNoLeader",
        "PgwardenBackupTooOld",
        "PgwardenDrillFailed",
    ):
        assert firing(scene, quiet) == [], quiet


def test_every_dashboard_panel_query_returns_data(scene: Scene) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {
        "namespace": scene.namespace,
        "job": "pgwarden-metrics",
        "__rate_interval": "1m",
        "__range": "1h",
    }
    queries = prometheus.panel_queries(dashboard, variables)
    assert len(queries) >= 15
    empty = []
    for title, expr in queries:
        samples = scene.query(expr)
        if not samples or not all(math.isfinite(value(s)) for s in samples):
            empty.append((title, expr, samples))
    assert empty == [], json.dumps(empty, indent=1)
