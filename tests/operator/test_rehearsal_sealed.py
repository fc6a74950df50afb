"""A rehearsal of a sealed backup: the rehearsal Job mounts the identity (the DatabaseBackup's, or the one
spec.rehearsal.encryption names) as one key of its Secret, and rehearses on what it opens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from operator_runs import NOW, job, written
from pgwarden_testing.localpg import LocalPostgres
from pyrage import x25519
from test_backup_sealed_and_copied import mounted
from test_job_runner import SETTINGS, assert_no_secret, inline_migration, run_job

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.task import IDENTITY_DIR, Task
from pgwarden.operator import backups, migrations
from pgwarden.operator.jobs import backup_job, migration_job
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]


def sealed(resource: Callable[..., Obj]) -> Obj:
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "sealed"}}
    body["spec"]["verify"] = {"restore": False}
    body["spec"]["encryption"] = {
        "recipientsSecretRef": {"name": "age-recipients"},
        "identitySecretRef": {"name": "age-identity", "key": "key.txt"},
    }
    return body


def test_a_rehearsal_of_a_sealed_backup_opens_it_with_the_backups_identity(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    identity = x25519.Identity.generate()
    secrets = {
        "shop-db": {"uri": db_url},
        "age-recipients": {"recipients": f"{identity.to_public()}\n"},
        "age-identity": {"key.txt": f"{identity}\n"},
    }
    root = tmp_path / "volume"
    first = {"0001_items.sql": "CREATE TABLE items (id int PRIMARY KEY);"}
    body = inline_migration(resource, first)
    body["spec"]["verify"] = {}
    assert run_job(migration_job(read(body), SETTINGS), secrets, tmp_path).code == 0  # type: ignore[arg-type]
    backup_body = sealed(resource)
    manifest = backup_job(DatabaseBackup.model_validate(backup_body), SETTINGS)
    took = run_job(manifest, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
    assert took.code == 0, took.stderr + took.stdout
    taken = observe(job(manifest["metadata"]["name"], state="complete"), [took.as_pod()])
    backup_body["status"] = written(backups.decide(read(backup_body), [taken], None, SETTINGS, NOW)).status

    body = inline_migration(resource, {**first, "0002_note.sql": "ALTER TABLE items ADD COLUMN note text;"})
    body["spec"]["verify"] = {}
    body["spec"]["rehearsal"] = {"backupRef": {"name": "shop-backup"}, "required": True}
    decided = migrations.decide(read(body), None, [], SETTINGS, NOW, referenced=read(backup_body))  # type: ignore[arg-type]
    rehearsal = decided.create
    assert rehearsal is not None
    (volume,) = [v for v in rehearsal["spec"]["template"]["spec"]["volumes"] if v["name"] == "age-identity"]
    assert volume["secret"]["secretName"] == "age-identity"
    assert volume["secret"]["items"] == [{"key": "key.txt", "path": "identity"}]
    mounts = rehearsal["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "age-identity", "mountPath": IDENTITY_DIR, "readOnly": True} in mounts
    env = rehearsal["spec"]["template"]["spec"]["containers"][0]["env"]
    task = Task.model_validate_json(next(e["value"] for e in env if e["name"] == "PGWARDEN_TASK"))
    assert task.rehearsal is not None and task.rehearsal.sealed is True

    ran = run_job(
        rehearsal, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root), **mounted(rehearsal, secrets, tmp_path)
    )
    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["rehearsal"]["outcome"] == "Succeeded"
    assert_no_secret(ran, pg.password, str(identity))
    with psycopg.connect(db_url) as conn:
        columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'")
        assert columns.fetchone() == (1,), "the database itself is not migrated by a rehearsal"
