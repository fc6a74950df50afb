"""Encryption and copies declared on a DatabaseBackup: the Jobs get one Secret key each, the Job seals and copies
through the engine, and status says so (public keys at most). Real PostgreSQL and MinIO, the Jobs' env as a
kubelet would give it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from operator_runs import NOW, job
from pgwarden_testing.localpg import LocalPostgres
from pgwarden_testing.s3server import S3Server
from pyrage import x25519
from test_job_runner import SETTINGS, Ran, assert_no_secret, run_job

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import AGE_RECIPIENTS_ENV, IDENTITY_DIR, copy_env
from pgwarden.errors import BadInput
from pgwarden.job import pod_inputs
from pgwarden.operator import backups, restores
from pgwarden.operator.jobs import backup_job, restore_job
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]
KEYS = Path(__file__).name


def _container(manifest: Obj) -> Obj:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert isinstance(container, dict)
    return container


def mounted(manifest: Obj, secrets: dict[str, dict[str, str]], tmp_path: Path) -> dict[str, str]:
    """What the kubelet would project for the identity volume, as a file the Job is pointed at."""
    for volume in manifest["spec"]["template"]["spec"]["volumes"]:
        if volume["name"] == "age-identity":
            (item,) = volume["secret"]["items"]
            path = tmp_path / f"identity-{volume['secret']['secretName']}"
            path.write_text(secrets[volume["secret"]["secretName"]][item["key"]])
            return {"PGWARDEN_IDENTITY_FILE": str(path)}
    return {"PGWARDEN_IDENTITY_FILE": str(tmp_path / "no-identity-mounted")}


def sealed_backup(resource: Callable[..., Obj], bucket: str, endpoint: str) -> Obj:
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "primary"}}
    body["spec"]["verify"] = {"restore": True}
    body["spec"]["encryption"] = {
        "recipientsSecretRef": {"name": "age-recipients"},
        "identitySecretRef": {"name": "age-identity", "key": "key.txt"},
    }
    body["spec"]["copies"] = [
        {
            "storage": {
                "s3": {
                    "bucket": bucket,
                    "prefix": "offsite",
                    "endpoint": endpoint,
                    "forcePathStyle": True,
                    "credentialsSecretRef": {"name": "offsite-s3"},
                }
            },
            "retention": {"keepLast": 1},
        }
    ]
    return body


def test_a_sealed_copied_backup_takes_one_key_of_each_secret(resource: Callable[..., Obj]) -> None:
    body = sealed_backup(resource, "offsite-bucket", "http://minio.storage:9000")
    manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    env = {item["name"]: item for item in _container(manifest)["env"]}
    assert env[AGE_RECIPIENTS_ENV]["valueFrom"]["secretKeyRef"] == {
        "name": "age-recipients",
        "key": "recipients",
        "optional": False,
    }
    assert env[copy_env(0, "AWS_ACCESS_KEY_ID")]["valueFrom"]["secretKeyRef"]["name"] == "offsite-s3"
    assert "envFrom" not in _container(manifest)
    (identity,) = [v for v in manifest["spec"]["template"]["spec"]["volumes"] if v["name"] == "age-identity"]
    assert identity["secret"]["items"] == [{"key": "key.txt", "path": "identity"}]
    assert {"name": "age-identity", "mountPath": IDENTITY_DIR, "readOnly": True} in _container(manifest)[
        "volumeMounts"
    ]

    body["spec"]["verify"] = {"restore": False}  # nothing restores in the backup Job: no identity there
    manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    assert all(v["name"] != "age-identity" for v in manifest["spec"]["template"]["spec"]["volumes"])


def test_an_encrypted_backup_needs_an_identity_for_verify_restore(resource: Callable[..., Obj]) -> None:
    body = sealed_backup(resource, "offsite-bucket", "http://minio.storage:9000")
    del body["spec"]["encryption"]["identitySecretRef"]
    with pytest.raises(ValueError, match="identitySecretRef"):
        DatabaseBackup.model_validate(body)


@pytest.mark.slow
def test_a_sealed_backup_is_copied_verified_pruned_there_and_restores_from_the_copy_with_its_identity(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, s3: S3Server, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 300)"
        )
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    bucket = s3.create_bucket()
    body = sealed_backup(resource, bucket, s3.endpoint)
    secrets = {
        "shop-db": {"uri": db_url},
        "age-recipients": {"recipients": f"# the team's key\n{public}\n"},
        "age-identity": {"key.txt": f"# created by age-keygen\n{identity}\n"},
        "offsite-s3": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
    }
    root = tmp_path / "volume"
    runs: list[Ran] = []
    for generation in (1, 2):
        body["metadata"]["generation"] = generation
        manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
        ran = run_job(
            manifest,
            secrets,
            tmp_path,
            PGWARDEN_STORAGE_ROOT=str(root),
            **mounted(manifest, secrets, tmp_path),
        )
        assert ran.code == 0, ran.stderr + ran.stdout
        assert_no_secret(ran, pg.password, str(identity), s3.secret_key)
        runs.append(ran)
    report = runs[-1].compact
    assert report["encryption"]["recipients"] == [public]
    (copy,) = report["copies"]
    assert copy["verified"] is True and copy["retained"] == 1
    assert copy["location"].startswith(f"s3://{bucket}/offsite/shop/shop-backup/")

    stored = root / "primary" / "shop" / "shop-backup" / report["backup"]["id"]
    (dump,) = [p for p in stored.iterdir() if p.name.startswith("dump")]
    head = dump.read_bytes()[:32]
    assert head.startswith(b"age-encryption.org/v1") and b"PGDMP" not in head
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="offsite/shop/shop-backup/")
    ids = {item["Key"].split("/")[3] for item in listed.get("Contents", [])}
    assert ids == {report["backup"]["id"]}  # the copy's retention (keepLast 1) pruned the first one there

    run = observe(job(manifest["metadata"]["name"], state="complete"), [runs[-1].as_pod()])
    status = backups.decide(read(body), [run], None, SETTINGS, NOW).status
    last = status.to_status()["lastBackup"]
    assert last["encryption"] == {"method": "age", "recipients": [public]}
    assert last["copies"] == [
        {"location": copy["location"], "sha256": report["backup"]["sha256"], "verified": True, "retained": 1}
    ]
    assert str(identity) not in json.dumps(status.to_status())

    # The primary is lost: the restore names the copy, and opens it with the identity.
    for path in sorted(stored.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    stored.rmdir()
    target = pg.create_database()
    restore_body = resource("restore.yaml", "DatabaseRestore")
    restore_body["spec"]["createDatabase"] = False
    restore_body["spec"]["source"]["backupRef"].update(name="shop-backup", copy=0)
    restore_body["spec"]["encryption"] = {"identitySecretRef": {"name": "age-identity", "key": "key.txt"}}
    referenced = read(dict(body, status=status.to_status()))
    assert isinstance(referenced, DatabaseBackup)
    source = restores.resolve_source(DatabaseRestore.model_validate(restore_body), referenced)
    assert not isinstance(source, restores.Waiting)
    secrets["shop-restored-db"] = {"uri": target}
    manifest = restore_job(DatabaseRestore.model_validate(restore_body), source, SETTINGS)
    env = {e["name"]: e for e in _container(manifest)["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "offsite-s3"
    ran = run_job(manifest, secrets, tmp_path, **mounted(manifest, secrets, tmp_path))
    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["verification"]["matchesBackup"] is True and ran.compact["rows"] == 300
    assert_no_secret(ran, pg.password, str(identity), s3.secret_key)

    # Without an identity the sealed copy is refused: exit 2, nothing created.
    del restore_body["spec"]["encryption"]
    other = pg.create_database()
    secrets["shop-restored-db"] = {"uri": other}
    manifest = restore_job(DatabaseRestore.model_validate(restore_body), source, SETTINGS)
    ran = run_job(manifest, secrets, tmp_path, **mounted(manifest, secrets, tmp_path))
    assert ran.code == 2, ran.stderr + ran.stdout
    assert "encrypted with age" in ran.compact["error"]["message"]
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT to_regclass('public.items')").fetchone() == (None,)


def test_a_restore_naming_a_copy_the_backup_does_not_have_waits_saying_so(
    resource: Callable[..., Obj],
) -> None:
    body = sealed_backup(resource, "offsite-bucket", "http://minio.storage:9000")
    body["status"] = {"lastBackup": {"id": "20250301T115900Z", "location": "/x/20250301T115900Z"}}
    referenced = read(body)
    assert isinstance(referenced, DatabaseBackup)
    restore_body = resource("restore.yaml", "DatabaseRestore")
    restore_body["spec"]["source"]["backupRef"].update(name="shop-backup", copy=1)
    restore = DatabaseRestore.model_validate(restore_body)
    waiting = restores.resolve_source(restore, referenced)
    assert isinstance(waiting, restores.Waiting) and waiting.reason == "CopyNotFound"
    assert "has 1 copy, so there is no source.backupRef.copy 1" in waiting.message
    decision = restores.decide(restore, None, referenced, SETTINGS, NOW)
    assert decision.create is None and decision.status.phase == "Pending"

    restore_body["spec"]["source"]["backupRef"]["copy"] = 0
    source = restores.resolve_source(DatabaseRestore.model_validate(restore_body), referenced)
    assert not isinstance(source, restores.Waiting)
    assert source.storage == referenced.spec.copies[0].storage and source.last_known_id == "20250301T115900Z"


def test_a_recipients_secret_key_without_a_key_stops_the_backup_naming_it(
    resource: Callable[..., Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DatabaseBackup.model_validate(sealed_backup(resource, "offsite-bucket", "http://minio:9000")).spec
    monkeypatch.setenv(AGE_RECIPIENTS_ENV, "# nobody yet\n\n")
    with pytest.raises(BadInput, match="Secret 'age-recipients' key 'recipients' holds no age recipient"):
        pod_inputs.recipients(spec)
    monkeypatch.setenv(AGE_RECIPIENTS_ENV, "# the team\nage1one\n  age1two  \n")
    assert pod_inputs.recipients(spec) == ["age1one", "age1two"]
