"""`pgwarden job drill` as the drill CronJob's Jobs run it: a real PostgreSQL, sealed backups on a volume, the
env a kubelet would give the pod, and the operator mapping the drill's report onto status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from operator_runs import NOW, job
from pgwarden_testing.localpg import LocalPostgres
from pyrage import x25519
from test_backup_sealed_and_copied import mounted
from test_job_runner import SETTINGS, Ran, assert_no_secret, run_job

from pgwarden.api.backup import DatabaseBackup
from pgwarden.operator import backups
from pgwarden.operator.drills import drill_cronjob
from pgwarden.operator.jobs import backup_job
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import read

Obj = dict[str, Any]


def from_cronjob(cronjob: Obj, name: str) -> Obj:
    """The Job `kubectl create job --from=cronjob/...` makes: the CronJob's jobTemplate, named."""
    template = cronjob["spec"]["jobTemplate"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": dict(template["metadata"], name=name, namespace=cronjob["metadata"]["namespace"]),
        "spec": template["spec"],
    }


class Drilled:
    """A DatabaseBackup with drills, its secrets, and what ran for it."""

    def __init__(self, body: Obj, secrets: dict[str, dict[str, str]], root: Path, tmp_path: Path) -> None:
        self.body, self.secrets, self.root, self.tmp_path = body, secrets, root, tmp_path
        self.generation = 0

    @property
    def model(self) -> DatabaseBackup:
        return DatabaseBackup.model_validate(self.body)

    def run(self, manifest: Obj) -> Ran:
        return run_job(
            manifest,
            self.secrets,
            self.tmp_path,
            PGWARDEN_STORAGE_ROOT=str(self.root),
            **mounted(manifest, self.secrets, self.tmp_path),
        )

    def backup(self) -> Ran:
        self.generation += 1
        self.body["metadata"]["generation"] = self.generation
        ran = self.run(backup_job(self.model, SETTINGS))
        assert ran.code == 0, ran.stderr + ran.stdout
        return ran

    def drill(self, name: str) -> tuple[Ran, Obj]:
        ran = self.run(from_cronjob(drill_cronjob(self.model, SETTINGS), name))
        finished = job(name, state="complete" if ran.code == 0 else "failed")
        finished["metadata"]["labels"]["pgwarden.io/task"] = "drill"
        run = observe(finished, [ran.as_pod()])
        resource = read(self.body)
        assert isinstance(resource, DatabaseBackup)
        decision = backups.decide(resource, [], None, SETTINGS, NOW, drill_runs=[run])
        self.body["status"] = decision.status.to_status()
        return ran, self.body["status"]

    @property
    def folder(self) -> Path:
        return self.root / "backups" / "shop" / "shop-nightly"

    def manifest(self, backup_id: str) -> Obj:
        data = json.loads((self.folder / backup_id / "manifest.json").read_text())
        assert isinstance(data, dict)
        return data


@pytest.fixture
def drilled(resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path) -> Drilled:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 400);"
            "CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b')"
        )
    identity = x25519.Identity.generate()
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"].pop("exclude")
    body["spec"].update(
        storage={"volume": {"claimName": "backups", "path": "backups"}},
        format="custom",
        parallelJobs=1,
        retention={"keepLast": 1},
        encryption={
            "recipientsSecretRef": {"name": "age-recipients"},
            "identitySecretRef": {"name": "age-identity"},
        },
        verify={"schedule": "0 4 * * 0", "server": {"secretRef": {"name": "drill-server"}}},
    )
    secrets = {
        "shop-db-params": {"uri": db_url},
        "drill-server": {"uri": pg.create_database()},  # a database of its own: the drill's maintenance one
        "age-recipients": {"recipients": str(identity.to_public())},
        "age-identity": {"identity": str(identity)},
    }
    return Drilled(body, secrets, tmp_path / "volume", tmp_path)


@pytest.mark.slow
def test_a_drill_restores_the_newest_sealed_backup_without_the_source_and_retention_keeps_what_it_verified(
    drilled: Drilled, db_url: str, pg: LocalPostgres
) -> None:
    first = drilled.backup().compact["backup"]["id"]

    # The source database is out of reach while the drill runs: it restores from storage only.
    source = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{source}" RENAME TO "{source}_away"')
    try:
        ran, status = drilled.drill("shop-nightly-drill-1")
    finally:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{source}_away" RENAME TO "{source}"')
    assert ran.code == 0, ran.stderr + ran.stdout
    assert_no_secret(ran, pg.password, drilled.secrets["age-identity"]["identity"])
    last = status["lastVerifiedBackup"]
    assert last["outcome"] == "Succeeded" and last["id"] == first
    assert last["tables"] == 2 and last["rows"] == 402
    assert last["restoreSeconds"] > 0 and last["durationSeconds"] >= last["restoreSeconds"]
    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert verified["status"] == "True"
    assert drilled.manifest(first)["verified"] is True
    with psycopg.connect(pg.url()) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%pgw_drill%'").fetchall()
    assert left == []
    assert drilled.secrets["age-identity"]["identity"] not in json.dumps(status)

    # keepLast 1, two more backups: the newest stays, and so does the newest one a drill verified.
    drilled.backup()
    newest = drilled.backup().compact["backup"]["id"]
    kept = sorted(p.name for p in drilled.folder.iterdir() if p.is_dir())
    assert kept == sorted([first, newest])

    # A byte of the newest dump flipped: the drill finds it, status says so.
    (dump,) = [p for p in (drilled.folder / newest).iterdir() if p.name.startswith("dump")]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    ran, status = drilled.drill("shop-nightly-drill-2")
    assert ran.code == 1, ran.stderr + ran.stdout
    last = status["lastVerifiedBackup"]
    assert last["outcome"] == "Failed" and last["id"] == newest and last["job"] == "shop-nightly-drill-2"
    assert "drill failed" in last["message"]
    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert verified["status"] == "False" and verified["reason"] == "DrillFailed"
    assert status["lastVerifiedTime"]  # the earlier success is still the last verified restore
    assert drilled.manifest(newest).get("verified") is not True
