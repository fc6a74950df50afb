"""The operator end to end on the local cluster: `kubectl apply` in, the operator and its Jobs running from
pgwarden's image on the real node, status, conditions and Events out, against a real PostgreSQL and a real
S3-compatible server.

The operator, its fixtures and the helpers live in operator_support.py (see there how it runs).
"""

from __future__ import annotations

import json
import signal
import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from chart_support import local_examples
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    assert_never_shown,
    condition,
    condition_reason,
    cronjob_of,
    events,
    in_namespace,
    migrations_configmap,
    resource,
    run_jobs,
    s3_secret,
    s3_storage,
    secret,
    seed,
    status_of,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def test_a_one_time_backup_to_s3_reports_location_size_sha256_tables_and_rows(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url)
    bucket = s3.create_bucket()
    spec = {"database": {"secretRef": {"name": "shop-db"}}, "storage": s3_storage(s3, bucket, "shop/")}
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("shop-db", uri=url),
            s3_secret(s3),
            resource("DatabaseBackup", "shop", spec),
        )
    )

    status = wait_status(
        kube, operator, "dbbackup", "shop", lambda s: s.get("phase") in ("Succeeded", "Failed")
    )
    assert status["phase"] == "Succeeded", status
    last = status["lastBackup"]
    assert last["location"].startswith(f"s3://{bucket}/shop/")
    assert last["sizeBytes"] > 0 and len(last["sha256"]) == 64
    assert last["tables"] == 2 and last["rows"] == 750
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Stale")["status"] == "False"
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    folder = f"shop/{operator.namespace}/shop"  # the resource's own folder under its prefix
    assert last["location"] == f"s3://{bucket}/{folder}/{last['id']}"
    assert f"{folder}/{last['id']}/manifest.json" in keys and f"{folder}/{last['id']}/report.json" in keys
    reasons = [e["reason"] for e in events(kube, operator.namespace, "shop")]
    assert "Started" in reasons and "BackupSucceeded" in reasons
    assert_never_shown(kube, operator, pg.password, s3.secret_key)

    assert "pgwarden_runs_total" in operator.http(operator.metrics_port, "/metrics")
    assert 'kind="backup",outcome="Succeeded"' in operator.http(operator.metrics_port, "/metrics")
    assert operator.http(operator.liveness_port, "/healthz")


SHOP_FILES = {
    "0001_create_customers.sql": "CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);",
    "0002_create_orders.sql": "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id));",
    "0003_seed.sql": "INSERT INTO customers (name) VALUES ('ada'), ('grace'), ('edsger');",
}


def test_a_migration_succeeds_and_its_counts_show_in_status_and_kubectl_get(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec = {
        "database": {"secretRef": {"name": "shop-db"}},
        "migrations": {"configMapRefs": [{"name": "shop-migrations"}]},
        "verify": {
            "expect": {"tables": ["customers", "orders"]},
            "checks": [{"name": "seeded", "sql": "SELECT count(*) FROM customers", "atLeast": 3}],
        },
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("shop-db", uri=url),
            migrations_configmap("shop-migrations", SHOP_FILES),
            resource("DatabaseMigration", "shop", spec),
        )
    )
    status = wait_status(kube, operator, "dbmig", "shop", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert status["currentVersion"] == "0003"
    assert [a["version"] for a in status["applied"]] == ["0001", "0002", "0003"]
    assert status["tables"] == {"before": 0, "after": 2}
    assert status["rows"] == {"before": 0, "after": 3}
    assert status["verification"]["passed"] is True
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Drifted")["status"] == "False"
    table = kube.kubectl("get", "dbmig", "shop", "-n", operator.namespace).stdout
    assert table.split("\n")[1].split()[:5] == ["shop", "0003", "Succeeded", "2", "3"], table

    # A new generation with one more file applies only that one.
    files = dict(
        SHOP_FILES, **{"0004_orders_index.sql": "CREATE INDEX orders_customer_idx ON orders (customer_id);"}
    )
    kube.apply(*in_namespace(operator.namespace, migrations_configmap("shop-migrations-v2", files)))
    spec["migrations"] = {"configMapRefs": [{"name": "shop-migrations-v2"}]}
    kube.apply(*in_namespace(operator.namespace, resource("DatabaseMigration", "shop", spec)))
    status = wait_status(
        kube,
        operator,
        "dbmig",
        "shop",
        lambda s: s.get("observedGeneration") == 2 and s.get("phase") in TERMINAL,
    )
    assert status["phase"] == "Succeeded", status
    assert [a["version"] for a in status["applied"]] == ["0004"]
    assert len(kube.get_all("jobs", operator.namespace)) == 2
    assert_never_shown(kube, operator, pg.password)


def test_a_failing_migration_is_rolled_back_and_the_status_says_so(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    files = {
        "0001_items.sql": "CREATE TABLE items (sku text PRIMARY KEY);\nINSERT INTO items VALUES ('a'), ('b');",
        "0002_required_price.sql": "ALTER TABLE items ADD COLUMN price numeric NOT NULL;",
    }
    spec = {
        "database": {"secretRef": {"name": "inventory-db"}},
        "migrations": {"inline": [{"name": n, "sql": s} for n, s in files.items()]},
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("inventory-db", uri=url),
            resource("DatabaseMigration", "inventory", spec),
        )
    )
    status = wait_status(kube, operator, "dbmig", "inventory", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "RolledBack", status
    assert status["rollback"]["strategy"] == "transaction"
    assert status["rollback"]["outcome"] == "Succeeded"
    assert "0002" in status["message"] and "price" in status["message"]
    assert status["tables"]["before"] == status["tables"]["after"] == 0
    assert condition(status, "Ready")["reason"] == "RolledBack"
    assert "RolledBack" in [e["reason"] for e in events(kube, operator.namespace, "inventory")]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('public.items')").fetchone() == (None,)
    assert (
        'outcome="Succeeded"'
        in operator.http(operator.metrics_port, "/metrics").split("pgwarden_rollbacks_total")[-1]
    )
    assert_never_shown(kube, operator, pg.password)


def test_a_missing_secret_yields_a_clear_condition(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    spec = {
        "database": {"secretRef": {"name": "shop-db"}},
        "storage": s3_storage(s3, s3.create_bucket(), "x/", credentials="no-such-secret"),
    }
    kube.apply(
        *in_namespace(
            operator.namespace, secret("shop-db", uri=url), resource("DatabaseBackup", "stuck", spec)
        )
    )
    status = wait_status(
        kube, operator, "dbbackup", "stuck", lambda s: condition_reason(s) == "JobCannotStart", timeout=90
    )
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert "no-such-secret" in ready["message"] and "CreateContainerConfigError" in ready["message"]
    assert status["phase"] == "Pending"
    kube.wait_for(  # kopf posts Events in the background, just after the status is written
        "the CannotStart Event",
        lambda: "CannotStart" in [e["reason"] for e in events(kube, operator.namespace, "stuck")],
        timeout=20,
    )

    migration = {
        "database": {"secretRef": {"name": "missing-db"}},
        "migrations": {"inline": [{"name": "0001_x.sql", "sql": "SELECT 1;"}]},
    }
    kube.apply(*in_namespace(operator.namespace, resource("DatabaseMigration", "nodb", migration)))
    status = wait_status(kube, operator, "dbmig", "nodb", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Failed"
    assert "Secret 'missing-db' is missing" in condition(status, "Ready")["message"]


def test_manual_approval_names_the_generation_and_an_edit_after_it_waits_for_its_own(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec: Obj = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"inline": [{"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"}]},
        "approval": "Manual",
    }
    kube.apply(
        *in_namespace(operator.namespace, secret("db", uri=url), resource("DatabaseMigration", "gated", spec))
    )
    # Before anyone approves, a read-only preview Job has planned it on the database: what would run, and lint.
    status = wait_status(
        kube, operator, "dbmig", "gated", lambda s: (s.get("preview") or {}).get("outcome") == "Succeeded"
    )
    assert status["phase"] == "AwaitingApproval" and status["preview"]["pending"] == ["0001"], status
    ns = operator.namespace
    assert f"kubectl annotate dbmig gated -n {ns} pgwarden.io/approved=1 --overwrite" in status["message"]
    assert status["approval"]["files"][0]["name"] == "0001_t.sql"
    shown = status["approval"]["files"][0]["sha256"]

    # The approval of old (`true`) approves nothing.
    kube.kubectl("annotate", "dbmig", "gated", "pgwarden.io/approved=true", "-n", ns)
    wait_status(kube, operator, "dbmig", "gated", lambda s: "approves nothing" in s.get("message", ""))
    assert run_jobs(kube, ns) == []

    # An edit after approval is a new generation: approval 1 does not run it.
    spec["migrations"]["inline"][0]["sql"] = "CREATE TABLE t (id int, note text);"
    kube.apply(*in_namespace(ns, resource("DatabaseMigration", "gated", spec)))
    kube.kubectl("annotate", "dbmig", "gated", "pgwarden.io/approved=1", "--overwrite", "-n", ns)
    status = wait_status(kube, operator, "dbmig", "gated", lambda s: "changed since" in s.get("message", ""))
    assert status["phase"] == "AwaitingApproval" and status["approval"]["generation"] == 2
    assert status["approval"]["files"][0]["sha256"] != shown
    time.sleep(3)
    assert run_jobs(kube, ns) == []

    kube.kubectl("annotate", "dbmig", "gated", "pgwarden.io/approved=2", "--overwrite", "-n", ns)
    status = wait_status(kube, operator, "dbmig", "gated", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert status["approval"] == dict(status["approval"], generation=2, approved=True)
    assert status["applied"][0]["checksum"] == status["approval"]["files"][0]["sha256"]
    assert len(run_jobs(kube, ns)) == 1
    with psycopg.connect(url) as conn:
        columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 't'")
        assert columns.fetchone() == (2,)


def test_restore_from_a_backup_ref_matches_the_backup(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    source = pg.create_database()
    seed(source, rows=100)
    target = pg.create_database()
    bucket = s3.create_bucket()
    backup = {"database": {"secretRef": {"name": "source-db"}}, "storage": s3_storage(s3, bucket, "src/")}
    restore = {
        "database": {"secretRef": {"name": "target-db"}},
        "source": {"backupRef": {"name": "src", "id": "latest"}},
        "clean": True,
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("source-db", uri=source),
            secret("target-db", uri=target),
            s3_secret(s3),
            resource("DatabaseRestore", "copy", restore),  # before its backup exists: it waits
            resource("DatabaseBackup", "src", backup),
        )
    )
    status = wait_status(
        kube, operator, "dbrestore", "copy", lambda s: s.get("phase") in TERMINAL, timeout=200
    )
    assert status["phase"] == "Succeeded", status
    backup_status = status_of(kube, "dbbackup", "src", operator.namespace)
    assert status["restoredFrom"]["id"] == backup_status["lastBackup"]["id"]
    assert status["verification"]["matchesBackup"] is True
    assert status["tables"]["after"] == 2 and status["rows"]["after"] == 300
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (200,)
    assert_never_shown(kube, operator, pg.password, s3.secret_key)


def test_an_operator_killed_mid_run_adopts_its_job_after_restart(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {
            "inline": [{"name": "0001_slow.sql", "sql": "CREATE TABLE t (id int);\nSELECT pg_sleep(8);"}]
        },
    }
    kube.apply(
        *in_namespace(operator.namespace, secret("db", uri=url), resource("DatabaseMigration", "slow", spec))
    )
    wait_status(kube, operator, "dbmig", "slow", lambda s: bool(s.get("job")))
    operator.stop(signal.SIGKILL)
    assert len(kube.get_all("jobs", operator.namespace)) == 1
    time.sleep(3)
    operator.start()
    status = wait_status(kube, operator, "dbmig", "slow", lambda s: s.get("phase") in TERMINAL)
    assert status["phase"] == "Succeeded", status
    jobs = kube.get_all("jobs", operator.namespace)
    assert [j["metadata"]["name"] for j in jobs] == [status["job"]]
    assert [e["reason"] for e in events(kube, operator.namespace, "slow")].count("Started") == 1


@pytest.mark.slow
def test_a_scheduled_backup_runs_through_its_cronjob_and_retention_trims(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url, rows=20)
    bucket = s3.create_bucket()
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "storage": s3_storage(s3, bucket, "nightly/"),
        "schedule": "* * * * *",
        "retention": {"keepLast": 1},
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("db", uri=url),
            s3_secret(s3),
            resource("DatabaseBackup", "every-minute", spec),
        )
    )
    status = wait_status(
        kube, operator, "dbbackup", "every-minute", lambda s: len(s.get("history", [])) >= 2, timeout=200
    )
    assert [run["outcome"] for run in status["history"][:2]] == ["Succeeded", "Succeeded"], status
    assert status["retained"] == 1
    assert status["phase"] in ("Scheduled", "Running")
    assert status.get("nextScheduleTime")
    cronjobs = kube.get_all("cronjobs", operator.namespace)
    assert len(cronjobs) == 1 and cronjobs[0]["spec"]["concurrencyPolicy"] == "Forbid"
    manifests = [
        o["Key"]
        for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        if o["Key"].endswith("manifest.json")
    ]
    assert manifests == [
        f"nightly/{operator.namespace}/every-minute/{status['lastBackup']['id']}/manifest.json"
    ]

    kube.kubectl(
        "patch",
        "dbbackup",
        "every-minute",
        "-n",
        operator.namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    status = wait_status(kube, operator, "dbbackup", "every-minute", lambda s: s.get("phase") == "Suspended")
    assert condition(status, "Suspended")["status"] == "True"
    assert kube.get_all("cronjobs", operator.namespace)[0]["spec"]["suspend"] is True


def test_the_examples_converge_and_kubectl_get_pgwarden_shows_their_columns(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    examples = local_examples(pg, s3, s3.create_bucket(), kube.pod_gateway)
    done = ("Succeeded", "Failed", "RolledBack", "Scheduled")
    # Migrations first, so the backup and the restore have the migrated tables to show.
    first = [doc for doc in examples if doc["kind"] not in ("DatabaseBackup", "DatabaseRestore")]
    kube.apply(*in_namespace(operator.namespace, *first))
    wait_status(kube, operator, "dbmig", "shop", lambda s: s.get("phase") in done, timeout=240)
    kube.apply(*in_namespace(operator.namespace, *examples))
    for kind, name in [
        ("dbbackup", "shop-backup"),
        ("dbmig", "shop"),
        ("dbmig", "inventory"),
        ("dbbackup", "shop-nightly"),
        ("dbrestore", "shop-restored"),
    ]:
        wait_status(kube, operator, kind, name, lambda s: s.get("phase") in done, timeout=240)
    output = kube.kubectl("get", "pgwarden", "-n", operator.namespace).stdout
    print(f"\n$ kubectl get pgwarden\n{output}")
    assert status_of(kube, "dbmig", "shop", operator.namespace)["phase"] == "Succeeded"
    assert status_of(kube, "dbmig", "inventory", operator.namespace)["phase"] == "RolledBack"
    assert status_of(kube, "dbbackup", "shop-backup", operator.namespace)["phase"] == "Succeeded"
    assert status_of(kube, "dbbackup", "shop-nightly", operator.namespace)["phase"] == "Scheduled"
    assert status_of(kube, "dbrestore", "shop-restored", operator.namespace)["phase"] == "Succeeded"
    assert_never_shown(kube, operator, pg.password, s3.secret_key)


def test_a_field_removed_from_a_scheduled_backup_leaves_its_cronjob(
    kube: LocalCluster, operator: ChartOperator
) -> None:
    storage = {"s3": {"bucket": "never-used", "credentialsSecretRef": {"name": "s3-credentials"}}}
    spec: Obj = {
        "database": {"secretRef": {"name": "db"}},
        "storage": storage,
        "schedule": "17 3 * * *",
        "timeZone": "Europe/Berlin",
        "jobTemplate": {
            "nodeSelector": {"disk": "fast"},
            "resources": {"requests": {"cpu": "100m"}},
            "activeDeadlineSeconds": 600,
        },
    }
    kube.apply(*in_namespace(operator.namespace, resource("DatabaseBackup", "nightly", spec)))

    def template(cronjob: Obj) -> Obj:
        return dict(cronjob["spec"]["jobTemplate"]["spec"])

    first = kube.wait_for("the CronJob", lambda: cronjob_of(kube, operator.namespace), timeout=60, interval=1)
    assert first["spec"]["timeZone"] == "Europe/Berlin"
    assert template(first)["template"]["spec"]["nodeSelector"] == {"disk": "fast"}
    assert template(first)["activeDeadlineSeconds"] == 600

    del spec["timeZone"], spec["jobTemplate"]
    kube.apply(*in_namespace(operator.namespace, resource("DatabaseBackup", "nightly", spec)))

    def replaced() -> Obj | None:
        cronjob = cronjob_of(kube, operator.namespace)
        return cronjob if cronjob and "timeZone" not in cronjob["spec"] else None

    cronjob = kube.wait_for("the CronJob without timeZone", replaced, timeout=60, interval=1)
    pod = template(cronjob)["template"]["spec"]
    assert "nodeSelector" not in pod
    assert not pod["containers"][0].get("resources")  # the apiserver leaves {} where none is set
    assert template(cronjob)["activeDeadlineSeconds"] == 6 * 3600  # the operator's default again
    assert cronjob["metadata"]["uid"] == first["metadata"]["uid"]  # replaced in place, not recreated


def test_the_apiserver_refuses_a_schedule_that_never_fires(
    kube: LocalCluster, crds: None, namespace: str
) -> None:
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "storage": {"volume": {"claimName": "backups"}},
        "schedule": "0 0 30 2 *",
    }
    result = kube.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(in_namespace(namespace, resource("DatabaseBackup", "never", spec))[0]),
        check=False,
    )
    assert result.returncode != 0
    assert "schedule never fires" in result.stderr


def test_what_a_restore_restores_cannot_change_after_creation(
    kube: LocalCluster, crds: None, namespace: str
) -> None:
    spec: Obj = {
        "database": {"secretRef": {"name": "target-db"}},
        "source": {"backupRef": {"name": "src"}},
        "clean": True,
    }
    kube.apply(*in_namespace(namespace, resource("DatabaseRestore", "copy", spec)))
    for change in ({"parallelJobs": 2}, {"clean": False}, {"source": {"backupRef": {"name": "other"}}}):
        result = kube.kubectl(
            "patch",
            "dbrestore",
            "copy",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": change}),
            check=False,
        )
        assert result.returncode != 0, change
        assert "a DatabaseRestore runs once" in result.stderr
    # Job settings do not define what is restored: they may change.
    template = {"spec": {"jobTemplate": {"activeDeadlineSeconds": 60}}}
    kube.kubectl("patch", "dbrestore", "copy", "-n", namespace, "--type=merge", "-p", json.dumps(template))


def test_a_job_deleted_mid_run_is_cancelled_and_never_recreated(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {
            "inline": [{"name": "0001_slow.sql", "sql": "CREATE TABLE t (id int);\nSELECT pg_sleep(20);"}]
        },
    }
    ns = operator.namespace
    kube.apply(*in_namespace(ns, secret("db", uri=url), resource("DatabaseMigration", "slow", spec)))
    status = wait_status(kube, operator, "dbmig", "slow", lambda s: s.get("phase") == "Running")
    kube.kubectl("delete", "job", status["job"], "-n", ns, "--wait=false")

    status = wait_status(kube, operator, "dbmig", "slow", lambda s: s.get("phase") == "Cancelled")
    assert "deleted before it finished" in status["message"]
    assert condition(status, "Ready")["reason"] == "Cancelled"
    time.sleep(6)  # several reconciles (the timer ticks every 2 s here): none starts it again
    assert [
        j["metadata"]["name"]
        for j in kube.get_all("jobs", ns)
        if j["metadata"].get("deletionTimestamp") is None
    ] == []
    assert status_of(kube, "dbmig", "slow", ns)["phase"] == "Cancelled"
    reasons = [e["reason"] for e in events(kube, ns, "slow")]
    assert reasons.count("Started") == 1 and reasons.count("Cancelled") == 1


def test_each_of_more_than_ten_finished_backup_jobs_is_announced_once(
    kube: LocalCluster, operator: ChartOperator
) -> None:
    ns = operator.namespace
    spec: Obj = {
        "database": {"secretRef": {"name": "no-such-db"}},  # each run fails at once: no database work
        "storage": {"s3": {"bucket": "never-used", "credentialsSecretRef": {"name": "s3-credentials"}}},
    }
    kube.apply(*in_namespace(ns, secret("s3-credentials", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")))
    jobs = 12
    for generation in range(1, jobs + 1):
        spec["staleAfter"] = f"{generation}d"  # any spec change is a new generation, so a new Job
        kube.apply(*in_namespace(ns, resource("DatabaseBackup", "often", spec)))
        kube.wait_for(
            f"the Job of generation {generation}",
            lambda wanted=generation: len(kube.get_all("jobs", ns)) >= wanted,
            timeout=60,
            interval=0.5,
        )

    def all_finished() -> Obj | None:
        status = status_of(kube, "dbbackup", "often", ns)
        finished = [j for j in kube.get_all("jobs", ns) if j.get("status", {}).get("conditions")]
        return status if len(finished) == jobs and status.get("phase") == "Failed" else None

    kube.wait_for("every Job finished", all_finished, timeout=240, interval=1)
    time.sleep(8)  # reconciles keep coming (timer, Job events): nothing is announced twice

    def announced() -> int:
        return sum(e.get("count", 1) for e in events(kube, ns, "often") if e["reason"] == "BackupFailed")

    assert announced() == jobs
    status = status_of(kube, "dbbackup", "often", ns)
    assert len(status["history"]) == 10
    failed = operator.http(operator.metrics_port, "/metrics")
    assert f'pgwarden_runs_total{{kind="backup",outcome="Failed"}} {float(jobs)}' in failed


def test_the_apiserver_refuses_inline_migrations_too_large_for_the_job(
    kube: LocalCluster, crds: None, namespace: str
) -> None:
    half = "SELECT 1;\n" * (5 * 1024)  # 50 KiB
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"inline": [{"name": "0001_a.sql", "sql": half}, {"name": "0002_b.sql", "sql": half}]},
    }
    result = kube.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(in_namespace(namespace, resource("DatabaseMigration", "big", spec))[0]),
        check=False,
    )
    assert result.returncode != 0
    assert "put larger sets in a ConfigMap" in result.stderr
