"""pgwarden under a real Argo CD: Applications synced from commits in a git repository by Argo CD's own
application controller and repo server (argocd_support.py), with docs/argocd/health.lua in argocd-cm and
the operator running from the chart on the real node.

What docs/argocd.md promises is asserted from Argo CD's side, its Application status read through the
API server: the operation state, what the sync did with each resource (a hook's phase and message), and
each managed resource's health.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING

import psycopg
import pytest
from argocd_support import (
    ArgoCD,
    argocd,
    health_of,
    operation_of,
    resource_status,
    status_excerpt,
    sync_result,
)
from operator_support import (
    ChartOperator,
    Obj,
    condition,
    in_namespace,
    migrations_configmap,
    resource,
    s3_secret,
    s3_storage,
    secret,
    status_of,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster
__all__ = ["argocd"]  # the module's one Argo CD, a fixture

V1_FILES = {
    "0001_customers.sql": "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);",
    "0002_seed.sql": "INSERT INTO customers VALUES (1, 'ada'), (2, 'grace');",
}
# v2 adds a migration that cannot apply (the rows have no email): the run rolls back.
V2_FILES = dict(
    V1_FILES, **{"0003_required_email.sql": "ALTER TABLE customers ADD COLUMN email text NOT NULL;"}
)


def migration(name: str, configmap: str, **spec: object) -> Obj:
    return resource(
        "DatabaseMigration",
        name,
        {
            "database": {"secretRef": {"name": "shop-db"}},
            "migrations": {"configMapRefs": [{"name": configmap}]},
        }
        | spec,
    )


def annotated(manifest: Obj, **annotations: str) -> Obj:
    metadata = manifest["metadata"]
    return dict(
        manifest, metadata=dict(metadata, annotations=dict(metadata.get("annotations", {}), **annotations))
    )


def presync_hook(manifest: Obj, hook_wave: int = 0) -> Obj:
    """The recipe of docs/argocd.md: the migration as a PreSync hook, replaced at each sync, and its
    ConfigMap a PreSync hook of an earlier wave (a plain resource would be applied only after the hook)."""
    return annotated(
        manifest,
        **{
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            "argocd.argoproj.io/sync-wave": str(hook_wave),
        },
    )


def wave(manifest: Obj, number: int) -> Obj:
    return annotated(manifest, **{"argocd.argoproj.io/sync-wave": str(number)})


def deployment(name: str, version: str, image: str) -> Obj:
    """The application the migration is for: no replicas (what matters is which version Argo CD applied)."""
    labels = {"app.kubernetes.io/name": name}
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [{"name": "APP_VERSION", "value": version}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels, **{"app.kubernetes.io/version": version})},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def deployed_version(kube: LocalCluster, namespace: str) -> str | None:
    found = kube.kubectl("get", "deployment", "shop", "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    return str(json.loads(found.stdout)["metadata"]["labels"]["app.kubernetes.io/version"])


def health_message(status: Obj) -> str:
    """The message health.lua gives: status.message, else the Ready condition's."""
    return str(status.get("message") or condition(status, "Ready")["message"])


def approve(kube: LocalCluster, status: Obj, generation: int) -> None:
    """Run the approval command the migration's status shows, as its reviewer would."""
    shown = re.search(r"kubectl annotate dbmig .* --overwrite", status["message"])
    assert shown is not None and f"pgwarden.io/approved={generation}-" in shown[0], status["message"]
    kube.kubectl(*shlex.split(shown[0])[1:])


def show(app: Obj) -> None:
    """Print the parts of the Application's status that `argocd app get` shows (docs/argocd.md quotes them)."""
    print(f"\n--- Application {app['metadata']['name']} ---\n{status_excerpt(app)}")


def test_a_presync_hook_migrates_before_the_deployment_and_a_rolled_back_one_stops_the_sync(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, argocd: ArgoCD
) -> None:
    ns = app = operator.namespace
    url = pg.create_database()
    kube.apply(*in_namespace(ns, secret("shop-db", uri=url)))  # Secrets stay out of git
    v1 = argocd.repository.commit(
        ns,
        [
            presync_hook(migrations_configmap("shop-migrations", V1_FILES), hook_wave=-1),
            presync_hook(migration("shop", "shop-migrations")),
            deployment("shop", "v1", kube.image),
        ],
        "shop v1",
    )
    argocd.create_application(app, ns, ns, v1)
    argocd.sync(app, v1)

    # While the hook runs, the Deployment is not there.
    def hook_done_or_deployment_early(application: Obj) -> bool:
        if deployed_version(kube, ns) is not None:
            assert status_of(kube, "dbmig", "shop", ns).get("phase") == "Succeeded", "Deployment before hook"
        return operation_of(application).get("phase") in ("Succeeded", "Failed", "Error")

    synced = argocd.wait(app, "the sync of v1", hook_done_or_deployment_early, timeout=180)
    show(synced)
    assert operation_of(synced)["phase"] == "Succeeded", operation_of(synced)
    status = status_of(kube, "dbmig", "shop", ns)
    assert status["phase"] == "Succeeded" and status["currentVersion"] == "0002"
    hook = sync_result(synced, "DatabaseMigration", "shop")
    assert (hook["hookType"], hook["syncPhase"], hook["hookPhase"]) == ("PreSync", "PreSync", "Succeeded")
    assert hook["message"] == health_message(status)
    applied = sync_result(synced, "Deployment", "shop")
    assert (applied["syncPhase"], applied["status"]) == ("Sync", "Synced")
    created = kube.get("deployment", "shop", ns)["metadata"]["creationTimestamp"]
    assert created >= condition(status, "Ready")["lastTransitionTime"]  # applied once the hook was Healthy
    # The last wave's sync ends once applied; Argo CD assesses the Deployment's health just after.
    argocd.wait(
        app, "the Deployment Healthy", lambda a: health_of(a, "Deployment", "shop").get("status") == "Healthy"
    )
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)

    # v2's migration fails and rolls back: the sync fails at the hook and v1 keeps running.
    v2 = argocd.repository.commit(
        ns,
        [
            presync_hook(migrations_configmap("shop-migrations", V2_FILES), hook_wave=-1),
            presync_hook(migration("shop", "shop-migrations")),
            deployment("shop", "v2", kube.image),
        ],
        "shop v2: customers need an email",
    )
    argocd.sync(app, v2)
    failed = argocd.wait_for_sync(app, v2, timeout=180)
    show(failed)
    operation = operation_of(failed)
    assert operation["phase"] == "Failed", operation
    status = status_of(kube, "dbmig", "shop", ns)
    assert status["phase"] == "RolledBack", status
    assert "0003" in status["message"] and "email" in status["message"]
    hook = sync_result(failed, "DatabaseMigration", "shop")
    assert (hook["hookType"], hook["hookPhase"], hook["message"]) == (
        "PreSync",
        "Failed",
        health_message(status),
    )
    assert deployed_version(kube, ns) == "v1"
    assert not [r for r in operation["syncResult"]["resources"] if r["kind"] == "Deployment"]
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'"
        )
        assert sorted(row[0] for row in columns) == ["id", "name"]


def test_a_manual_migration_in_an_earlier_wave_is_suspended_until_approved_and_degraded_when_rolled_back(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, argocd: ArgoCD
) -> None:
    ns = app = operator.namespace
    url = pg.create_database()
    kube.apply(*in_namespace(ns, secret("shop-db", uri=url)))

    def commit(version: str, files: dict[str, str]) -> str:
        return argocd.repository.commit(
            ns,
            [
                wave(migrations_configmap(f"shop-migrations-{version}", files), -2),
                wave(migration("shop", f"shop-migrations-{version}", approval="Manual"), -1),
                deployment("shop", version, kube.image),
            ],
            f"shop {version}",
        )

    v1 = commit("v1", V1_FILES)
    argocd.create_application(app, ns, ns, v1)
    argocd.sync(app, v1)
    waiting = argocd.wait(
        app,
        "the sync waiting on the migration, Suspended",
        lambda a: (
            health_of(a, "DatabaseMigration", "shop").get("status") == "Suspended"
            and operation_of(a).get("message")
            == "waiting for healthy state of pgwarden.io/DatabaseMigration/shop"
        ),
    )
    show(waiting)
    status = status_of(kube, "dbmig", "shop", ns)
    assert status["phase"] == "AwaitingApproval"
    assert health_of(waiting, "DatabaseMigration", "shop")["message"] == status["message"]
    operation = operation_of(waiting)
    assert operation["phase"] == "Running"
    assert deployed_version(kube, ns) is None

    approve(kube, status, generation=1)
    synced = argocd.wait_for_sync(app, v1, timeout=180)
    show(synced)
    assert operation_of(synced)["phase"] == "Succeeded", operation_of(synced)
    assert health_of(synced, "DatabaseMigration", "shop")["status"] == "Healthy"
    assert status_of(kube, "dbmig", "shop", ns)["phase"] == "Succeeded"
    assert deployed_version(kube, ns) == "v1"

    # v2 (approved as well) rolls back: the migration is Degraded with our message, the sync fails.
    v2 = commit("v2", V2_FILES)
    argocd.sync(app, v2)
    argocd.wait(
        app,
        "v2's migration Suspended",
        lambda a: (
            health_of(a, "DatabaseMigration", "shop").get("status") == "Suspended"
            and status_of(kube, "dbmig", "shop", ns).get("approval", {}).get("generation") == 2
        ),
    )
    approve(kube, status_of(kube, "dbmig", "shop", ns), generation=2)
    failed = argocd.wait_for_sync(app, v2, timeout=180)
    show(failed)
    assert operation_of(failed)["phase"] == "Failed", operation_of(failed)
    status = status_of(kube, "dbmig", "shop", ns)
    assert status["phase"] == "RolledBack"
    health = health_of(failed, "DatabaseMigration", "shop")
    assert health == {"status": "Degraded", "message": health_message(status)} | health
    assert sync_result(failed, "DatabaseMigration", "shop")["message"] == health_message(status)
    assert deployed_version(kube, ns) == "v1"


def test_a_scheduled_backup_is_healthy_suspended_from_git_and_pruned_with_its_cronjob(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server, argocd: ArgoCD
) -> None:
    ns = app = operator.namespace
    kube.apply(*in_namespace(ns, secret("shop-db", uri=pg.create_database()), s3_secret(s3)))

    storage = s3_storage(s3, s3.create_bucket(), "nightly/")

    def backup(**spec: object) -> Obj:
        return resource(
            "DatabaseBackup",
            "nightly",
            {"database": {"secretRef": {"name": "shop-db"}}, "storage": storage, "schedule": "17 3 * * *"}
            | spec,
        )

    # The application's other resources: they keep its folder in git once the backup leaves it.
    settings = migrations_configmap("shop-settings", {"greeting": "hello"})
    scheduled = argocd.repository.commit(ns, [settings, backup()], "a nightly backup")
    argocd.create_application(app, ns, ns, scheduled)
    argocd.sync(app, scheduled)
    healthy = argocd.wait(
        app,
        "the backup Healthy",
        lambda a: health_of(a, "DatabaseBackup", "nightly").get("status") == "Healthy",
    )
    show(healthy)
    assert kube.get_all("cronjobs", ns)[0]["spec"]["schedule"] == "17 3 * * *"
    assert health_of(healthy, "DatabaseBackup", "nightly")["message"].startswith("next backup at ")

    suspended = argocd.repository.commit(ns, [settings, backup(suspend=True)], "suspend the nightly backup")
    argocd.sync(app, suspended)
    shown = argocd.wait(
        app,
        "the backup Suspended",
        lambda a: health_of(a, "DatabaseBackup", "nightly").get("status") == "Suspended",
    )
    show(shown)
    assert operation_of(shown)["phase"] == "Succeeded"
    assert (
        health_of(shown, "DatabaseBackup", "nightly")["message"]
        == "the schedule is suspended; no backups run"
    )
    assert kube.get_all("cronjobs", ns)[0]["spec"]["suspend"] is True

    removed = argocd.repository.commit(ns, [settings], "no more nightly backup")
    argocd.sync(app, removed, prune=True)
    pruned = argocd.wait_for_sync(app, removed)
    show(pruned)
    assert operation_of(pruned)["phase"] == "Succeeded", operation_of(pruned)
    result = sync_result(pruned, "DatabaseBackup", "nightly")
    assert (result["status"], result["message"]) == ("Pruned", "pruned")
    assert resource_status(argocd.application(app), "DatabaseBackup", "nightly") is None
    kube.wait_for("the CronJob to go with its backup", lambda: not kube.get_all("cronjobs", ns), timeout=60)
