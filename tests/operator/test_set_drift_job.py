"""`pgwarden job drift` against real databases, with the env a kubelet would build from the set's drift
CronJob and the tenants' Secrets: the whole contract from the operator's manifest to the set's status, with
no cluster. Each target connects with its own Secret's keys only; nothing is written anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from operator_runs import job
from pgwarden_testing.localpg import LocalPostgres
from set_support import NOW, Fleet, migration_set, typed_migration_set, with_status
from test_job_runner import SETTINGS, assert_no_secret, libpq_secret, run_job

from pgwarden.api.reports import Outcome
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.operator import migration_sets, set_drift
from pgwarden.operator.observe import observe
from pgwarden.operator.set_drift import DriftInputs

Obj = dict[str, Any]
FILES = {"0001_invoices.sql": "CREATE TABLE invoices (id int PRIMARY KEY, total numeric NOT NULL DEFAULT 0);"}


def migrated(url: str, directory: Path) -> str:
    assert migrate(url, MigrateOptions(directory=directory)).outcome == Outcome.SUCCEEDED
    return url


def schema_states(url: str) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*), max(id) FROM pgwarden.schema_state").fetchone()


def test_a_drift_job_names_the_tenant_changed_by_hand_and_the_set_shows_it(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    files = tmp_path / "migrations"
    files.mkdir()
    for name, sql in FILES.items():
        (files / name).write_text(sql)
    urls = {f"tenant-{i}": pg.create_database() for i in range(1, 6)}
    for name in ("tenant-1", "tenant-2", "tenant-3"):
        migrated(urls[name], files)
    with psycopg.connect(urls["tenant-2"], autocommit=True) as conn:
        conn.execute("ALTER TABLE invoices ADD COLUMN note text")
    secrets = {
        "tenant-1": {"uri": urls["tenant-1"]},
        "tenant-2": libpq_secret(urls["tenant-2"]),  # the libpq keys instead of uri
        "tenant-3": {"uri": urls["tenant-3"]},
        "tenant-4": {"uri": urls["tenant-4"]},  # never migrated
        "tenant-5": {"user": "nobody"},  # neither uri nor host
    }
    before = {name: schema_states(urls[name]) for name in ("tenant-1", "tenant-2", "tenant-3")}

    body = migration_set(rollout={"canary": 1, "maxParallel": 2, "maxFailures": 1})
    body["spec"]["drift"] = {"schedule": "17 * * * *"}
    fleet = Fleet()
    mset = typed_migration_set(body)
    targets = sorted(secrets)
    decision = migration_sets.decide(mset, targets, fleet.states(), NOW)
    fleet.apply(decision)
    decision = set_drift.with_drift(decision, mset, targets, DriftInputs(), SETTINGS, NOW)
    (cronjob,) = decision.apply_cronjobs
    ran = run_job({"spec": cronjob["spec"]["jobTemplate"]["spec"]}, secrets, tmp_path)

    assert ran.code == 0, ran.stderr + ran.stdout
    assert len(ran.termination.encode()) <= 4096
    report = ran.compact
    assert report["counts"] == {"targets": 5, "inSync": 2, "drifted": 1, "unchecked": 2}
    assert [(f["target"], f["verdict"]) for f in report["findings"]] == [
        ("tenant-2", "Drifted"),
        ("tenant-5", "Unreachable"),
        ("tenant-4", "NotMigrated"),
    ]
    assert report["reference"]["target"] == "tenant-1" and report["reference"]["version"] == "0001"
    assert "tenant-2: column public.invoices.note: added since the last run" in ran.stderr
    assert_no_secret(ran, pg.password)
    for name, states in before.items():
        assert schema_states(urls[name]) == states, f"{name}: a drift check writes nothing"
    with psycopg.connect(urls["tenant-4"]) as conn:
        assert conn.execute("SELECT to_regnamespace('pgwarden')").fetchone() == (None,)

    # The operator reads the report from the Job's pod, as the kubelet left it.
    made = job("tenants-drift-0-abc-1", state="complete")
    made["metadata"]["labels"].update(cronjob["spec"]["jobTemplate"]["metadata"]["labels"])
    pod = ran.as_pod()
    pod["metadata"]["labels"] = {"batch.kubernetes.io/job-name": "tenants-drift-0-abc-1"}
    mset = typed_migration_set(with_status(body, decision))
    inputs = DriftInputs(cronjobs=[cronjob], jobs=[made], runs=[observe(made, [pod])])
    later = migration_sets.decide(mset, targets, fleet.states(), NOW)
    status = set_drift.with_drift(later, mset, targets, inputs, SETTINGS, NOW).status
    assert [note.target for note in status.drift.drifted_targets] == ["tenant-2"]
    assert [note.target for note in status.drift.unchecked_targets] == ["tenant-4", "tenant-5"]
    drifted = status.conditions[-1]
    assert (drifted.type, drifted.status) == ("Drifted", "True")
    assert "tenant-2 (1 difference(s) since its last migration run" in drifted.message
    assert pg.password not in json.dumps(status.to_status())
