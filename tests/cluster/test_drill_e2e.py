"""Restore drills end to end on the local cluster: an encrypted scheduled backup with a copy, its drill CronJob
triggered as `kubectl create job --from` does, and what status, Events and the storage show afterwards.

The operator and its Jobs run from pgwarden's image on the real node (operator_support.py), against a real
PostgreSQL and a real MinIO.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from operator_support import (
    ChartOperator,
    assert_never_shown,
    condition,
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
from pyrage import x25519

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _drill_cronjob(kube: LocalCluster, namespace: str) -> str:
    names = [
        c["metadata"]["name"]
        for c in kube.get_all("cronjobs", namespace)
        if (c["metadata"].get("labels") or {}).get("pgwarden.io/task") == "drill"
    ]
    assert len(names) == 1, names
    return names[0]


def test_an_encrypted_scheduled_backup_is_copied_and_its_drill_job_proves_it_restores(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url, rows=40)
    bucket, offsite = s3.create_bucket(), s3.create_bucket()
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    copy = s3_storage(s3, offsite, "offsite/", credentials="offsite-s3")
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "storage": s3_storage(s3, bucket, "nightly/"),
        "schedule": "* * * * *",
        "retention": {"keepLast": 2},
        "encryption": {
            "recipientsSecretRef": {"name": "age-recipients"},
            "identitySecretRef": {"name": "age-identity"},
        },
        "copies": [{"storage": copy, "retention": {"keepLast": 1}}],
        "verify": {"schedule": "0 3 1 1 *"},  # once a year: this test runs it by hand
    }
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("db", uri=url),
            s3_secret(s3),
            secret("offsite-s3", AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key),
            secret("age-recipients", recipients=public),
            secret("age-identity", identity=f"# drill key\n{identity}\n"),
            resource("DatabaseBackup", "drilled", spec),
        )
    )
    status = wait_status(
        kube,
        operator,
        "dbbackup",
        "drilled",
        lambda s: bool((s.get("lastBackup") or {}).get("copies")),
        timeout=240,
    )
    last = status["lastBackup"]
    assert last["encryption"] == {"method": "age", "recipients": [public]}
    (copied,) = last["copies"]
    assert copied["verified"] is True and copied["sha256"] == last["sha256"]
    assert copied["location"] == f"s3://{offsite}/offsite/{operator.namespace}/drilled/{last['id']}"
    # What the storage holds is sealed: an age file, not a pg_dump archive.
    for where in (bucket, offsite):
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=where).get("Contents", [])]
        dump = next(k for k in keys if f"/{last['id']}/dump" in k)
        head = s3.client().get_object(Bucket=where, Key=dump, Range="bytes=0-63")["Body"].read()
        assert head.startswith(b"age-encryption.org/v1") and b"PGDMP" not in head

    drill_cron = _drill_cronjob(kube, operator.namespace)
    cron = next(
        c for c in kube.get_all("cronjobs", operator.namespace) if c["metadata"]["name"] == drill_cron
    )
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["metadata"]["ownerReferences"][0]["name"] == "drilled"
    kube.kubectl("create", "job", "drill-now", f"--from=cronjob/{drill_cron}", "-n", operator.namespace)

    status = wait_status(
        kube,
        operator,
        "dbbackup",
        "drilled",
        lambda s: (s.get("lastVerifiedBackup") or {}).get("job") == "drill-now",
        timeout=240,
    )
    verified = status["lastVerifiedBackup"]
    assert verified["outcome"] == "Succeeded", json.dumps(verified)
    assert verified["durationSeconds"] > 0 and verified["restoreSeconds"] > 0
    assert verified["tables"] == 2 and verified["rows"] == 120
    assert verified["differences"] == []
    assert status["lastVerifiedTime"]
    assert condition(status, "Verified")["status"] == "True"
    reasons = [e["reason"] for e in events(kube, operator.namespace, "drilled")]
    assert reasons.count("DrillSucceeded") == 1, reasons

    manifest = json.loads(
        s3.client()
        .get_object(
            Bucket=bucket, Key=f"nightly/{operator.namespace}/drilled/{verified['id']}/manifest.json"
        )["Body"]
        .read()
    )
    assert manifest["verified"] is True
    assert_never_shown(kube, operator, str(identity), s3.secret_key, pg.password)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {
                "encryption": {"recipientsSecretRef": {"name": "age-recipients"}},
                "verify": {"schedule": "0 3 * * 0"},
            },
            "needs encryption.identitySecretRef",
        ),
        (
            {"verify": {"schedule": "0 3 * * 0", "copy": 0}},
            "verify.copy names a copy spec.copies does not have",
        ),
        ({"verify": {"schedule": "0 0 31 4 *"}}, "verify.schedule never fires"),
        ({"verify": {"schedule": "every sunday"}}, "verify.schedule must be a cron expression"),
    ],
)
def test_the_apiserver_refuses_drills_it_could_never_run(
    kube: LocalCluster, crds: None, namespace: str, extra: dict[str, object], message: str
) -> None:
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "storage": {"volume": {"claimName": "backups"}},
        **extra,
    }
    result = kube.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(in_namespace(namespace, resource("DatabaseBackup", "drills", spec))[0]),
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
