"""Calendar retention end to end: a DatabaseBackup's Job prunes its own folder on its time zone's calendar,
and status says which backups it kept by which rule and which it deleted.

The folder already holds four real backups of the same owner, moved back in time by rewriting their
manifests (the test cannot wait for calendar days to pass): 21:30 and 22:30 UTC on 30 March 2025 are one
day in UTC but two in Berlin, where summer time began that night.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
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

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
PAST = (
    "2024-06-01T10:00:00+00:00",
    "2025-03-30T10:00:00+00:00",
    "2025-03-30T21:30:00+00:00",
    "2025-03-30T22:30:00+00:00",
)


def _backup_in_the_past(s3: s3server.S3Server, url: str, folder: str, owner: str, when: str) -> str:
    """A real backup by the command line into `folder`, owned by `owner`, then dated `when`."""
    made = subprocess.run(
        [PGWARDEN, "backup", url, "--to", folder, "--owner", owner, "--json"],
        env={k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))} | s3.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    backup_id = str(json.loads(made.stdout)["backup"]["id"])
    bucket, _, prefix = folder.removeprefix("s3://").partition("/")
    key = f"{prefix}/{backup_id}/manifest.json"
    client = s3.client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest["startedAt"] = manifest["completedAt"] = when
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    return backup_id


def test_a_backups_retention_keeps_by_berlins_calendar_and_status_names_each_rule(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url, rows=20)
    bucket = s3.create_bucket()
    owner = f"DatabaseBackup/{operator.namespace}/gfs"
    folder = f"s3://{bucket}/gfs/{operator.namespace}/gfs"
    past = {when[:16]: _backup_in_the_past(s3, url, folder, owner, when) for when in PAST}
    spec = {
        "database": {"secretRef": {"name": "db"}},
        "storage": s3_storage(s3, bucket, "gfs/"),
        "timeZone": "Europe/Berlin",
        "retention": {"keepDaily": 3, "keepMonthly": 2},
    }
    kube.apply(
        *in_namespace(
            operator.namespace, secret("db", uri=url), s3_secret(s3), resource("DatabaseBackup", "gfs", spec)
        )
    )
    status = wait_status(kube, operator, "dbbackup", "gfs", lambda s: s.get("phase") in TERMINAL, timeout=240)
    assert status["phase"] == "Succeeded", status
    today = status["lastBackup"]["id"]

    retention = status["retention"]
    assert retention["timeZone"] == "Europe/Berlin"
    assert status["retained"] == 3
    assert {item["id"]: item["rules"] for item in retention["kept"]} == {
        today: ["newestComplete", "keepDaily", "keepMonthly"],
        past["2025-03-30T22:30"]: ["keepDaily", "keepMonthly"],  # 31 March in Berlin
        past["2025-03-30T21:30"]: ["keepDaily"],  # 30 March in Berlin
    }
    assert {item["id"]: item["reason"] for item in retention["deleted"]} == {
        past["2025-03-30T10:00"]: "keepDaily 3: day 2025-03-30 has a newer backup and keepMonthly 2: month "
        "2025-03 has a newer backup",
        past["2024-06-01T10:00"]: "keepDaily 3: day 2024-06-01 is older than the 3 newest days with a backup "
        "and keepMonthly 2: month 2024-06 is older than the 2 newest months with a backup",
    }
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"gfs/{operator.namespace}/gfs/")
    manifests = {
        item["Key"].split("/")[-2] for item in listing["Contents"] if item["Key"].endswith("manifest.json")
    }
    assert manifests == {today, past["2025-03-30T22:30"], past["2025-03-30T21:30"]}
    deleted = {past["2025-03-30T10:00"], past["2024-06-01T10:00"]}
    assert not [item["Key"] for item in listing["Contents"] if item["Key"].split("/")[-2] in deleted]
    described = kube.kubectl("get", "dbbackup", "gfs", "-n", operator.namespace, "-o", "yaml").stdout
    assert "keepMonthly" in described and "newest of day 2025-03-31" in described
    print(described)  # the README's excerpt comes from here
