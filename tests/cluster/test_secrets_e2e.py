"""Secrets stay where they are: the operator cannot read them, and nothing of them reaches what it shows.

The operator runs under the chart's own namespaced Role (the `operator` fixture); a backup, a restore from it
and a migration that fails and rolls back all run for real with canary values in their Secrets. No canary may
appear in status, Events, the operator's log, its /metrics, or `kubectl describe` of the resources, their
Jobs and Pods (where the termination message shows).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    assert_never_shown,
    in_namespace,
    resource,
    s3_storage,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres
from web_identity_support import identity_storage

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def test_the_operator_cannot_read_secrets_in_the_namespace_it_works_in(
    kube: LocalCluster, operator: ChartOperator, tmp_path: Path
) -> None:
    """A token of the chart's ServiceAccount (release pgwarden), asked of the API server: Secrets are
    forbidden, Jobs are not."""
    canary = f"canary-{secrets.token_hex(8)}"
    kube.apply(*in_namespace(operator.namespace, secret("shop-db", password=canary)))
    kubeconfig = kube.service_account_kubeconfig(
        operator.namespace, "pgwarden", tmp_path / "operator.kubeconfig"
    )

    def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
        return kube.kubectl(*args, "-n", operator.namespace, kubeconfig=kubeconfig, check=False)

    for args in (
        ("get", "secret", "shop-db", "-o", "json"),
        ("get", "secrets"),
        ("get", "secrets", "--watch", "--request-timeout=2s"),
    ):
        result = as_operator(*args)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), (args, result.stderr)
        assert canary not in result.stdout + result.stderr
    for verb in ("get", "list", "watch"):
        assert as_operator("auth", "can-i", verb, "secrets").stdout.strip() == "no", verb
    assert as_operator("auth", "can-i", "create", "jobs").stdout.strip() == "yes", (
        "the token is the operator's"
    )


# A JSON Web Token (a ServiceAccount token) wherever it stands: header and payload are base64url JSON.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")


def _reports(server: s3server.S3Server, bucket: str) -> str:
    """Every report.json the backups left beside their dumps."""
    client = server.client()
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return "\n".join(
        client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for key in keys
        if key.endswith("report.json")
    )


def shown(kube: LocalCluster, operator: ChartOperator) -> dict[str, str]:
    """Everything a person or a scraper sees of pgwarden's work, by where it is seen."""
    namespace = operator.namespace
    texts = {"metrics": operator.http(operator.metrics_port, "/metrics")}
    for kind in ("databasemigrations", "databasebackups", "databaserestores", "jobs", "cronjobs", "pods"):
        texts[f"describe {kind}"] = kube.kubectl("describe", kind, "-n", namespace).stdout
    texts["events"] = json.dumps(kube.get_all("events", namespace))
    texts["pods"] = json.dumps([pod.get("status") for pod in kube.get_all("pods", namespace)])
    return texts


@pytest.mark.timeout(900)  # five resources' Jobs on one node
def test_no_secret_value_reaches_status_events_logs_metrics_or_kubectl_describe_of_any_kind(
    kube: LocalCluster,
    operator: ChartOperator,
    pg: LocalPostgres,
    s3: s3server.S3Server,
    oidc_s3: s3server.S3Server,
) -> None:
    """Canary values in every Secret, and a backup and a restore by web identity, whose ServiceAccount
    tokens (never known to the test) must not show either: nothing shaped like a JWT may appear."""
    source = pg.create_database()
    seed(source, rows=50)
    target = pg.create_database()
    by_identity = pg.create_database()
    failing = pg.create_database()
    bucket = s3.create_bucket()
    identity_bucket = oidc_s3.create_bucket()
    canary = f"canary-{secrets.token_hex(8)}"  # a key no Job needs: it must never be read at all
    files = {
        "0001_items.sql": "CREATE TABLE items (sku text PRIMARY KEY);\nINSERT INTO items VALUES ('a');",
        "0002_required_price.sql": "ALTER TABLE items ADD COLUMN price numeric NOT NULL;",
    }
    manifests: list[Obj] = [
        secret("source-db", uri=source, unused=canary),
        secret("target-db", uri=target, unused=canary),
        secret("failing-db", uri=failing, unused=canary),
        secret("identity-db", uri=by_identity, unused=canary),
        secret(
            "s3-credentials",
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            unused=canary,
        ),
        resource(
            "DatabaseBackup",
            "src",
            {"database": {"secretRef": {"name": "source-db"}}, "storage": s3_storage(s3, bucket, "src/")},
        ),
        resource(
            "DatabaseRestore",
            "copy",
            {
                "database": {"secretRef": {"name": "target-db"}},
                "source": {"backupRef": {"name": "src", "id": "latest"}},
                "clean": True,
            },
        ),
        resource(
            "DatabaseBackup",
            "by-identity",
            {
                "database": {"secretRef": {"name": "source-db"}},
                "storage": identity_storage(oidc_s3, identity_bucket, "src/"),
                "retention": {"keepDaily": 7},
            },
        ),
        resource(
            "DatabaseRestore",
            "by-identity",
            {
                "database": {"secretRef": {"name": "identity-db"}},
                "source": {"backupRef": {"name": "by-identity", "id": "latest"}},
                "clean": True,
            },
        ),
        resource(
            "DatabaseMigration",
            "failing",
            {
                "database": {"secretRef": {"name": "failing-db"}},
                "migrations": {"inline": [{"name": n, "sql": s} for n, s in files.items()]},
            },
        ),
    ]
    kube.apply(*in_namespace(operator.namespace, *manifests))
    for kind, name in (
        ("dbbackup", "src"),
        ("dbrestore", "copy"),
        ("dbmig", "failing"),
        ("dbbackup", "by-identity"),
        ("dbrestore", "by-identity"),
    ):
        status = wait_status(kube, operator, kind, name, lambda s: s.get("phase") in TERMINAL, timeout=240)
        assert status["phase"] in ("Succeeded", "RolledBack"), (kind, status)

    texts = shown(kube, operator)
    assert "pgwarden_runs_total" in texts["metrics"] and 'kind="restore"' in texts["metrics"]
    for kind in ("databasemigrations", "databasebackups", "databaserestores"):
        assert "Status:" in texts[f"describe {kind}"], f"kubectl describe {kind} showed nothing"
    assert "rolled back" in texts["describe databasemigrations"].lower()
    texts["job logs"] = "\n".join(
        kube.kubectl("logs", f"job/{job['metadata']['name']}", "-n", operator.namespace).stdout
        for job in kube.get_all("jobs", operator.namespace)
    )
    texts["reports"] = _reports(s3, bucket) + _reports(oidc_s3, identity_bucket)
    assert texts["reports"].count('"outcome"') >= 2, "both backups left their report.json"
    assert "Succeeded" in texts["job logs"], texts["job logs"][-2000:]
    for where, text in texts.items():
        for value in (pg.password, s3.secret_key, oidc_s3.secret_key, canary):
            assert value not in text, f"a Secret value is shown in {where}"
        assert not JWT.search(text), f"a token is shown in {where}"
    assert_never_shown(kube, operator, pg.password, s3.secret_key, oidc_s3.secret_key, canary)


@pytest.mark.parametrize(
    "spec",
    [
        {
            "database": {"secretRef": {"name": "db", "namespace": "kube-system"}},
            "storage": {"volume": {"claimName": "b"}},
        },
        {
            "database": {
                "secretRef": {"name": "db"},
                "caSecretRef": {"name": "ca", "namespace": "kube-system"},
            },
            "storage": {"volume": {"claimName": "b"}},
        },
        {
            "database": {"secretRef": {"name": "db"}},
            "storage": {
                "s3": {
                    "bucket": "backups",
                    "credentialsSecretRef": {"name": "s3", "namespace": "kube-system"},
                }
            },
        },
    ],
    ids=["database", "ca", "s3-credentials"],
)
def test_a_secret_reference_cannot_name_another_namespace(
    kube: LocalCluster, namespace: str, crds: None, spec: Obj
) -> None:
    """References are names only: the Pod resolves them in the resource's namespace, and the API server
    refuses a `namespace` beside a name rather than drop it quietly."""
    manifest = in_namespace(namespace, resource("DatabaseBackup", "elsewhere", spec))[0]
    result = kube.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, result.stdout
    assert 'unknown field "spec.' in result.stderr and "namespace" in result.stderr, result.stderr
