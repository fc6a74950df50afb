"""Storage by identity end to end: a backup (with a copy) and a restore whose only storage credential is the
Job's ServiceAccount, and the command line doing the same through boto3's standard environment.

The namespace holds no storage key at all: the Jobs get a ServiceAccount token projected for MinIO's audience,
which boto3's web-identity provider exchanges at MinIO's STS (configured with the cluster's service-account
issuer as its OpenID provider, web_identity_support.py) for short-lived keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    in_namespace,
    resource,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres
from web_identity_support import AUDIENCE, ROLE_ARN, identity_storage

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))


def _rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("customers", "orders")
        }


def _keys(s3: s3server.S3Server, bucket: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_backup_with_a_copy_and_a_restore_run_on_the_job_service_account_with_no_key_in_the_namespace(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, oidc_s3: s3server.S3Server
) -> None:
    source, target = pg.create_database(), pg.create_database()
    seed(source, rows=30)
    bucket, offsite = oidc_s3.create_bucket(), oidc_s3.create_bucket()
    backup_spec = {
        "database": {"secretRef": {"name": "source-db"}},
        "storage": identity_storage(oidc_s3, bucket, "shop/"),
        "copies": [{"storage": identity_storage(oidc_s3, offsite, "offsite/")}],
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("source-db", uri=source),
            secret("target-db", uri=target),
            resource("DatabaseBackup", "by-identity", backup_spec),
        )
    )
    status = wait_status(kube, operator, "dbbackup", "by-identity", lambda s: s.get("phase") in TERMINAL, 240)
    assert status["phase"] == "Succeeded", status
    backup_id = status["lastBackup"]["id"]
    folder = f"shop/{operator.namespace}/by-identity/{backup_id}"
    assert f"{folder}/manifest.json" in _keys(oidc_s3, bucket)
    [copy] = status["lastBackup"]["copies"]
    assert copy["verified"] is True, copy
    assert f"offsite/{operator.namespace}/by-identity/{backup_id}/manifest.json" in _keys(oidc_s3, offsite)

    kube.apply(
        *in_namespace(
            operator.namespace,
            resource(
                "DatabaseRestore",
                "back",
                {
                    "database": {"secretRef": {"name": "target-db"}},
                    "source": {"backupRef": {"name": "by-identity", "id": "latest"}},
                },
            ),
        )
    )
    restored = wait_status(kube, operator, "dbrestore", "back", lambda s: s.get("phase") in TERMINAL, 240)
    assert restored["phase"] == "Succeeded", restored
    assert _rows(target) == _rows(source) == {"customers": 30, "orders": 60}

    for kind, name in (("dbbackup", "by-identity"), ("dbrestore", "back")):  # for the README
        print(kube.kubectl("describe", kind, name, "-n", operator.namespace).stdout)
    # No key anywhere in the namespace: no Secret holds an AWS key or MinIO's root secret.
    for item in kube.get_all("secrets", operator.namespace):
        data = item.get("data") or {}
        assert not [key for key in data if key.startswith("AWS_")], item["metadata"]["name"]
        assert oidc_s3.secret_key not in json.dumps(item)
    # Each Job's Pod: no API token, the ServiceAccount token projected for MinIO's audience only, the role.
    jobs = kube.get_all("jobs", operator.namespace)
    assert len(jobs) == 2, [j["metadata"]["name"] for j in jobs]
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        projected = [v["projected"]["sources"] for v in pod["volumes"] if "projected" in v]
        assert projected and all(
            source["serviceAccountToken"]["audience"] == AUDIENCE
            for sources in projected
            for source in sources
        ), pod["volumes"]
        env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
        print(json.dumps([v for v in pod["volumes"] if "projected" in v], indent=1))  # for the README
        assert env["AWS_ROLE_ARN"] == ROLE_ARN
        assert env["AWS_WEB_IDENTITY_TOKEN_FILE"].endswith("/token")
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_the_command_line_takes_the_identity_from_boto3s_standard_environment(
    kube: LocalCluster, namespace: str, pg: LocalPostgres, oidc_s3: s3server.S3Server, tmp_path: Path
) -> None:
    """A token of the namespace's ServiceAccount for MinIO's audience in a file, AWS_ROLE_ARN and
    AWS_WEB_IDENTITY_TOKEN_FILE: backup and restore run with no key in the environment."""
    source, target = pg.create_database(), pg.create_database()
    seed(source, rows=12)
    bucket = oidc_s3.create_bucket()
    token = kube.kubectl("create", "token", "default", "-n", namespace, "--audience", AUDIENCE).stdout.strip()
    token_file = tmp_path / "token"
    token_file.write_text(token)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PG"))}
    env |= {
        "AWS_ENDPOINT_URL": oidc_s3.endpoint,
        "AWS_REGION": s3server.REGION,
        "AWS_ROLE_ARN": ROLE_ARN,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
    }

    def pgwarden(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [PGWARDEN, *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert token not in done.stdout + done.stderr
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(json.loads(done.stdout))

    made = pgwarden("backup", source, "--to", f"s3://{bucket}/cli")
    backup = made["backup"]
    assert isinstance(backup, dict)
    assert f"cli/{backup['id']}/manifest.json" in _keys(oidc_s3, bucket)
    pgwarden("restore", target, "--from", str(backup["location"]))
    assert _rows(target) == _rows(source) == {"customers": 12, "orders": 24}

    # The same environment with a token for another audience is refused by MinIO's STS: the identity is
    # what opens the bucket.
    token_file.write_text(
        kube.kubectl(
            "create", "token", "default", "-n", namespace, "--audience", "someone-else"
        ).stdout.strip()
    )
    refused = subprocess.run(
        [PGWARDEN, "backups", f"s3://{bucket}/cli", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0, refused.stdout
