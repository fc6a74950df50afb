"""The Jobs and CronJobs the operator creates: names, ownership, credentials, security, overrides."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_runs import NOW, written

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.common import StorageSpec
from pgwarden.api.crd import KINDS_BY_NAME, crd
from pgwarden.api.migration import INLINE_SQL_LIMIT, DatabaseMigration
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import MIGRATIONS_DIR, TASK_ENV, BackupScope, RestoreSource, Task
from pgwarden.operator import migrations, naming
from pgwarden.operator.jobs import (
    ACTIVE_DEADLINE_ENV,
    DEFAULT_ACTIVE_DEADLINE_SECONDS,
    JobSettings,
    TaskTooLarge,
    backup_cronjob,
    backup_job,
    migration_job,
    restore_job,
)
from pgwarden.operator.policy import Policy
from pgwarden.operator.resources import read

Obj = dict[str, Any]
SETTINGS = JobSettings(image="pgwarden:test")


def container(job: Obj) -> Obj:
    spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
    return dict(spec["template"]["spec"]["containers"][0])


def pod_spec(job: Obj) -> Obj:
    return dict(job["spec"]["template"]["spec"])


def env(job: Obj) -> dict[str, Obj]:
    return {item["name"]: item for item in container(job)["env"]}


def task_of(job: Obj) -> Task:
    return Task.model_validate_json(env(job)[TASK_ENV]["value"])


def migration(resource: Callable[..., Obj], **metadata: Any) -> DatabaseMigration:
    return DatabaseMigration.model_validate(resource("migration-shop.yaml", "DatabaseMigration", **metadata))


def test_job_name_is_the_same_for_the_same_generation_and_new_for_a_new_one(
    resource: Callable[..., Obj],
) -> None:
    first = migration_job(migration(resource, generation=3), SETTINGS)["metadata"]["name"]
    again = migration_job(migration(resource, generation=3), SETTINGS)["metadata"]["name"]
    later = migration_job(migration(resource, generation=4), SETTINGS)["metadata"]["name"]
    assert first == again
    assert first != later
    assert first.startswith("shop-migrate-3-")


def test_long_resource_names_are_trimmed_to_a_valid_job_name() -> None:
    name = naming.job_name("DatabaseMigration", "a" * 250, "uid", 12345)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and "-migrate-12345-" in name
    assert len(naming.cronjob_name("b" * 250, "uid")) <= 52
    assert naming.job_name("DatabaseMigration", "a" * 250, "uid-1", 1) != naming.job_name(
        "DatabaseMigration", "a" * 250, "uid-2", 1
    )


def test_the_job_is_owned_by_the_resource_so_kubernetes_deletes_it_along(
    resource: Callable[..., Obj],
) -> None:
    job = migration_job(migration(resource), SETTINGS)
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseMigration",
        "name": "shop",
        "uid": "0f0e0d0c-1111-2222-3333-444455556666",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["metadata"]["namespace"] == "shop"
    labels = pod_spec_labels(job)
    assert labels[naming.LABEL_RESOURCE_UID] == owner["uid"]
    assert naming.owner_of(job) == ("DatabaseMigration", "shop", "shop")


def pod_spec_labels(job: Obj) -> dict[str, str]:
    return dict(job["spec"]["template"]["metadata"]["labels"])


def test_database_credentials_come_only_from_secret_key_refs(resource: Callable[..., Obj]) -> None:
    job = migration_job(migration(resource), SETTINGS)
    variables = env(job)
    for name, key in [("DATABASE_URL", "uri"), ("PGHOST", "host"), ("PGPASSWORD", "password")]:
        assert variables[name]["valueFrom"]["secretKeyRef"] == {
            "name": "shop-db",
            "key": key,
            "optional": True,
        }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = variables[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "backup-s3-credentials", "key": name, "optional": False}
    assert "value" not in variables["PGPASSWORD"]


def test_the_task_carries_the_spec_and_no_secret_value(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    job = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    task = task_of(job)
    assert task.kind == "migrate"
    assert task.migrations_dir == MIGRATIONS_DIR
    assert task.migration is not None and task.migration.verify.checks[0].name == "seed customers present"
    text = json.dumps(job)
    assert "shop-password" not in text and "pgwarden-secret" not in text


def test_one_configmap_is_a_configmap_volume_several_are_one_projected_volume(
    resource: Callable[..., Obj],
) -> None:
    one = migration_job(migration(resource), SETTINGS)
    (volume,) = [v for v in pod_spec(one)["volumes"] if v["name"] == "migrations"]
    assert volume["configMap"] == {"name": "shop-migrations"}
    mount = next(m for m in container(one)["volumeMounts"] if m["name"] == "migrations")
    assert mount == {"name": "migrations", "mountPath": MIGRATIONS_DIR, "readOnly": True}

    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"]["configMapRefs"] = [{"name": "base"}, {"name": "release-2"}]
    several = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    (volume,) = [v for v in pod_spec(several)["volumes"] if v["name"] == "migrations"]
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": "base"}},
        {"configMap": {"name": "release-2"}},
    ]


def test_migrations_from_an_image_are_copied_by_an_init_container(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"] = {"image": {"image": "registry.example/shop-migrations:7", "path": "/sql"}}
    allowed = replace(SETTINGS, policy=Policy(migration_images=("registry.example/shop-migrations",)))
    job = migration_job(DatabaseMigration.model_validate(body), allowed)
    (init,) = pod_spec(job)["initContainers"]
    assert init["image"] == "registry.example/shop-migrations:7"
    assert init["command"][-2:] == ["/sql", MIGRATIONS_DIR]
    assert {"name": "migrations", "emptyDir": {}} in pod_spec(job)["volumes"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_inline_migrations_travel_in_the_task(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"] = {"inline": [{"name": "0001_init.sql", "sql": "CREATE TABLE t (id int);"}]}
    job = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    task = task_of(job)
    assert task.migrations_dir is None
    assert task.migration is not None and task.migration.migrations.inline is not None
    assert task.migration.migrations.inline[0].sql == "CREATE TABLE t (id int);"
    assert not [v for v in pod_spec(job)["volumes"] if v["name"] == "migrations"]


def test_pods_run_under_the_restricted_profile_without_a_token(resource: Callable[..., Obj]) -> None:
    job = migration_job(migration(resource), SETTINGS)
    spec = pod_spec(job)
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert {"name": "scratch", "mountPath": "/tmp"} in container(job)["volumeMounts"]
    assert container(job)["command"] == ["pgwarden", "job", "migrate"]
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_migration_jobs_are_never_retried_and_honour_the_job_template(resource: Callable[..., Obj]) -> None:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["jobTemplate"] = {
        "image": "my/pgwarden:1",
        "activeDeadlineSeconds": 600,
        "serviceAccountName": "migrator",
        "nodeSelector": {"pool": "db"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
        "resources": {"limits": {"memory": "1Gi"}},
    }
    allowed = Policy(allow_image_override=True, job_images=("my/pgwarden",), service_accounts=("migrator",))
    job = migration_job(DatabaseMigration.model_validate(body), replace(SETTINGS, policy=allowed))
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 600
    spec = pod_spec(job)
    assert spec["serviceAccountName"] == "migrator"
    assert spec["nodeSelector"] == {"pool": "db"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert container(job)["image"] == "my/pgwarden:1"
    assert container(job)["resources"] == {"limits": {"memory": "1Gi"}, "requests": {}}


def test_libpq_keys_ssl_mode_and_ca_reach_the_pod(resource: Callable[..., Obj]) -> None:
    body = resource("backup-nightly.yaml", "DatabaseBackup")
    body["spec"]["database"]["caSecretRef"] = {"name": "db-ca"}
    job = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    variables = env(job)
    assert variables["PGSSLMODE"]["value"] == "prefer"
    assert variables["PGSSLROOTCERT"]["value"] == "/var/run/pgwarden/ca/ca.crt"
    ca = next(v for v in pod_spec(job)["volumes"] if v["name"] == "ca")
    assert ca["secret"] == {"secretName": "db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_a_schedule_becomes_a_cronjob_kubernetes_runs(resource: Callable[..., Obj]) -> None:
    backup = DatabaseBackup.model_validate(resource("backup-nightly.yaml", "DatabaseBackup"))
    cronjob = backup_cronjob(backup, SETTINGS)
    spec = cronjob["spec"]
    assert cronjob["kind"] == "CronJob"
    assert spec["schedule"] == "0 2 * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == SETTINGS.starting_deadline_seconds
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
    assert spec["jobTemplate"]["metadata"]["annotations"][naming.ANNOTATION_NAME] == "shop-nightly"
    assert container(cronjob)["command"] == ["pgwarden", "job", "backup"]
    assert cronjob["metadata"]["ownerReferences"][0]["kind"] == "DatabaseBackup"
    same = backup_cronjob(backup, SETTINGS)
    assert (
        same["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH]
        == (cronjob["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH])
    )


def test_a_volume_storage_is_mounted_and_needs_no_credentials(resource: Callable[..., Obj]) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "shop"}}
    job = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    assert {"name": "storage", "persistentVolumeClaim": {"claimName": "backups"}} in pod_spec(job)["volumes"]
    assert "AWS_ACCESS_KEY_ID" not in env(job)


def test_a_restore_job_reads_the_resolved_source(resource: Callable[..., Obj]) -> None:
    restore = DatabaseRestore.model_validate(resource("restore.yaml", "DatabaseRestore"))
    storage = StorageSpec.model_validate(
        {"s3": {"bucket": "pgwarden-backups", "prefix": "shop/", "credentialsSecretRef": {"name": "s3"}}}
    )
    job = restore_job(restore, RestoreSource(storage=storage, backup_id="20250101T000000Z"), SETTINGS)
    task = task_of(job)
    assert task.restore_source is not None and task.restore_source.backup_id == "20250101T000000Z"
    assert env(job)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3"
    assert env(job)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "shop-restored-db"
    assert job["spec"]["backoffLimit"] == 0


# -- bounded runs: every Job has a deadline -------------------------------------------------------


def every_workload(
    resource: Callable[..., Obj], settings: JobSettings, template: Obj | None = None
) -> list[Obj]:
    """A migration Job, a one-time backup Job, a scheduled backup's CronJob and a restore Job."""
    bodies = {
        "migration": resource("migration-shop.yaml", "DatabaseMigration"),
        "once": resource("backup-once.yaml", "DatabaseBackup"),
        "nightly": resource("backup-nightly.yaml", "DatabaseBackup"),
        "restore": resource("restore.yaml", "DatabaseRestore"),
    }
    for body in bodies.values():
        body["spec"]["jobTemplate"] = dict(template or {})
    storage = DatabaseBackup.model_validate(bodies["once"]).spec.storage
    return [
        migration_job(DatabaseMigration.model_validate(bodies["migration"]), settings),
        backup_job(DatabaseBackup.model_validate(bodies["once"]), settings),
        backup_cronjob(DatabaseBackup.model_validate(bodies["nightly"]), settings),
        restore_job(
            DatabaseRestore.model_validate(bodies["restore"]), RestoreSource(storage=storage), settings
        ),
    ]


def deadline(workload: Obj) -> int | None:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    value = spec.get("activeDeadlineSeconds")
    return int(value) if value is not None else None


def test_every_job_and_cronjob_template_gets_the_operators_default_deadline(
    resource: Callable[..., Obj],
) -> None:
    settings = JobSettings(image="pgwarden:test", active_deadline_seconds=7200)
    assert [deadline(w) for w in every_workload(resource, settings)] == [7200] * 4


def test_a_resource_deadline_overrides_the_operators_default(resource: Callable[..., Obj]) -> None:
    settings = JobSettings(image="pgwarden:test", active_deadline_seconds=7200)
    workloads = every_workload(resource, settings, {"activeDeadlineSeconds": 600})
    assert [deadline(w) for w in workloads] == [600] * 4


def test_without_any_setting_jobs_still_stop_after_six_hours(resource: Callable[..., Obj]) -> None:
    assert DEFAULT_ACTIVE_DEADLINE_SECONDS == 6 * 3600
    assert [deadline(w) for w in every_workload(resource, SETTINGS)] == [6 * 3600] * 4


def test_an_operator_default_of_zero_means_no_deadline(resource: Callable[..., Obj]) -> None:
    settings = JobSettings(image="pgwarden:test", active_deadline_seconds=0)
    assert [deadline(w) for w in every_workload(resource, settings)] == [None] * 4
    with_own = every_workload(resource, settings, {"activeDeadlineSeconds": 900})
    assert [deadline(w) for w in with_own] == [900] * 4


def test_the_default_deadline_comes_from_the_operators_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ACTIVE_DEADLINE_ENV, "5400")
    assert JobSettings(image="x").active_deadline_seconds == 5400
    monkeypatch.setenv(ACTIVE_DEADLINE_ENV, "0")
    assert JobSettings().active_deadline_seconds == 0
    monkeypatch.delenv(ACTIVE_DEADLINE_ENV)
    assert JobSettings().active_deadline_seconds == DEFAULT_ACTIVE_DEADLINE_SECONDS


def test_a_changed_default_deadline_updates_the_cronjob(resource: Callable[..., Obj]) -> None:
    backup = DatabaseBackup.model_validate(resource("backup-nightly.yaml", "DatabaseBackup"))
    backup.spec.job_template.active_deadline_seconds = None
    hashes = {
        naming_hash(backup_cronjob(backup, JobSettings(image="i", active_deadline_seconds=seconds)))
        for seconds in (3600, 7200)
    }
    assert len(hashes) == 2


def naming_hash(cronjob: Obj) -> str:
    return str(cronjob["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH])


def test_the_operator_command_line_takes_the_default_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgwarden.console import build_parser

    monkeypatch.delenv(ACTIVE_DEADLINE_ENV, raising=False)
    assert (
        build_parser().parse_args(["operator"]).job_active_deadline_seconds == DEFAULT_ACTIVE_DEADLINE_SECONDS
    )
    args = build_parser().parse_args(["operator", "--job-active-deadline-seconds", "900"])
    assert args.job_active_deadline_seconds == 900
    monkeypatch.setenv(ACTIVE_DEADLINE_ENV, "1800")
    assert build_parser().parse_args(["operator"]).job_active_deadline_seconds == 1800


# -- backups belong to their owner: the task says whose and where ---------------------------------


def test_a_backup_task_names_its_owner_and_its_own_folder(resource: Callable[..., Obj]) -> None:
    backup = DatabaseBackup.model_validate(resource("backup-nightly.yaml", "DatabaseBackup"))
    for workload in (backup_job(backup, SETTINGS), backup_cronjob(backup, SETTINGS)):
        task = task_of(workload)
        assert task.backup_scope == BackupScope(
            owner="DatabaseBackup/shop/shop-nightly", path="shop/shop-nightly"
        )


def test_two_backups_sharing_a_bucket_and_prefix_write_to_different_folders(
    resource: Callable[..., Obj],
) -> None:
    first = resource("backup-once.yaml", "DatabaseBackup")
    second = resource("backup-once.yaml", "DatabaseBackup", uid="another-uid")
    second["metadata"]["name"] = "billing-backup"
    scopes = [
        task_of(backup_job(DatabaseBackup.model_validate(b), SETTINGS)).backup_scope for b in (first, second)
    ]
    assert scopes[0] is not None and scopes[1] is not None
    assert scopes[0].path != scopes[1].path and scopes[0].owner != scopes[1].owner


# -- the chart passes the default deadline to the operator ----------------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def helm() -> Path:
    """helm built from its Go module by hack/build-helm.sh (cached after the first build)."""
    build = subprocess.run(
        [str(REPO / "hack" / "build-helm.sh")], capture_output=True, text=True, timeout=1700, check=False
    )
    if build.returncode != 0:
        pytest.fail(f"hack/build-helm.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    return Path(build.stdout.strip().splitlines()[-1])


def rendered_operator_args(helm: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    args = [str(helm), "template", "pgwarden", str(REPO / "charts" / "pgwarden")]
    for setting in settings:
        args += ["--set", setting]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def operator_command_line(helm: Path, *settings: str) -> argparse.Namespace:
    from pgwarden.console import build_parser

    done = rendered_operator_args(helm, *settings)
    assert done.returncode == 0, done.stderr
    (deployment,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return build_parser().parse_args(container["args"])


@pytest.mark.timeout(1800)
def test_the_chart_gives_the_operator_a_default_job_deadline_of_six_hours(helm: Path) -> None:
    assert operator_command_line(helm).job_active_deadline_seconds == 6 * 3600


def test_the_chart_value_sets_the_operators_job_deadline(helm: Path) -> None:
    assert (
        operator_command_line(helm, "jobActiveDeadlineSeconds=1000000").job_active_deadline_seconds == 1000000
    )
    assert operator_command_line(helm, "jobActiveDeadlineSeconds=0").job_active_deadline_seconds == 0


def test_the_chart_refuses_a_negative_job_deadline(helm: Path) -> None:
    done = rendered_operator_args(helm, "jobActiveDeadlineSeconds=-1")
    assert done.returncode != 0
    assert "jobActiveDeadlineSeconds must be 0 (no deadline) or a number of seconds" in done.stderr


def inline_migration(resource: Callable[..., Obj], *sqls: str) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"] = {
        "inline": [{"name": f"{i + 1:04d}_m.sql", "sql": sql} for i, sql in enumerate(sqls)]
    }
    return body


def test_inline_migrations_larger_than_the_task_can_carry_are_refused_by_the_model_and_crd(
    resource: Callable[..., Obj],
) -> None:
    body = inline_migration(resource, "x" * (INLINE_SQL_LIMIT // 2), "y" * (INLINE_SQL_LIMIT // 2 + 1))
    with pytest.raises(ValueError, match="put larger sets in a ConfigMap"):
        DatabaseMigration.model_validate(body)
    source = crd(KINDS_BY_NAME["DatabaseMigration"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = source["properties"]["spec"]["properties"]["migrations"]["x-kubernetes-validations"]
    assert any(f"<= {INLINE_SQL_LIMIT}" in rule["rule"] for rule in rules)


def test_the_largest_inline_set_the_crd_allows_fits_the_jobs_environment(
    resource: Callable[..., Obj],
) -> None:
    body = inline_migration(resource, "SELECT 'ß';\n" * (INLINE_SQL_LIMIT // 12))
    job = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    assert len(env(job)[TASK_ENV]["value"].encode()) < 128 * 1024 - len(TASK_ENV) - 1
    assert task_of(job).migration is not None


def test_a_task_the_environment_cannot_hold_is_a_clear_failure_not_a_pod_that_cannot_start(
    resource: Callable[..., Obj],
) -> None:
    body = inline_migration(resource, '"\\' * (INLINE_SQL_LIMIT // 2 - 10))  # doubles when JSON-escaped
    with pytest.raises(TaskTooLarge, match="ConfigMap"):
        migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    decision = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    assert decision.create is None and decision.status["phase"] == "Failed"
    assert "too large" in decision.status["message"]
    assert [e.reason for e in decision.events] == ["Failed"]
    body["status"] = decision.status
    again = written(migrations.decide(read(body), None, [], SETTINGS, NOW))
    assert again.create is None and again.events == () and again.finished == ()


# -- storage by identity: the Job ServiceAccount's token for the storage's audience ----------------------

IDENTITY = {
    "webIdentity": {"roleArn": "arn:aws:iam::123456789012:role/backups", "audience": "minio-pgwarden"}
}


def test_a_web_identity_storage_gets_a_token_for_its_audience_and_no_key(
    resource: Callable[..., Obj],
) -> None:
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"]["s3"].pop("credentialsSecretRef", None)
    body["spec"]["storage"]["s3"]["credentials"] = IDENTITY
    body["spec"]["copies"] = [
        {
            "storage": {
                "s3": {
                    "bucket": "offsite",
                    "credentials": {"webIdentity": {"roleArn": "arn:aws:iam::9:role/copy"}},
                }
            }
        }
    ]
    job = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    spec, variables = pod_spec(job), env(job)
    assert spec["automountServiceAccountToken"] is False  # the API token stays off
    tokens = {
        v["name"]: v["projected"]["sources"][0]["serviceAccountToken"]
        for v in spec["volumes"]
        if "projected" in v
    }
    assert tokens == {
        "web-identity-storage": {"audience": "minio-pgwarden", "expirationSeconds": 3600, "path": "token"},
        "web-identity-copy-0": {"audience": "sts.amazonaws.com", "expirationSeconds": 3600, "path": "token"},
    }
    mounts = {m["name"]: m for m in container(job)["volumeMounts"]}
    assert mounts["web-identity-storage"] == {
        "name": "web-identity-storage",
        "mountPath": "/var/run/pgwarden/web-identity/storage",
        "readOnly": True,
    }
    assert variables["AWS_ROLE_ARN"]["value"] == "arn:aws:iam::123456789012:role/backups"
    assert variables["AWS_WEB_IDENTITY_TOKEN_FILE"]["value"] == "/var/run/pgwarden/web-identity/storage/token"
    assert variables["PGWARDEN_COPY_0_AWS_ROLE_ARN"]["value"] == "arn:aws:iam::9:role/copy"
    assert variables["PGWARDEN_COPY_0_AWS_WEB_IDENTITY_TOKEN_FILE"]["value"] == (
        "/var/run/pgwarden/web-identity/copy-0/token"
    )
    assert not [name for name in variables if "AWS_ACCESS_KEY_ID" in name or "AWS_SECRET_ACCESS_KEY" in name]


def test_a_restore_from_a_web_identity_storage_gets_the_same_token(resource: Callable[..., Obj]) -> None:
    restore = DatabaseRestore.model_validate(resource("restore.yaml", "DatabaseRestore"))
    storage = StorageSpec.model_validate({"s3": {"bucket": "pgwarden-backups", "credentials": IDENTITY}})
    job = restore_job(restore, RestoreSource(storage=storage), SETTINGS)
    assert env(job)["AWS_WEB_IDENTITY_TOKEN_FILE"]["value"] == "/var/run/pgwarden/web-identity/storage/token"
    assert any(v["name"] == "web-identity-storage" for v in pod_spec(job)["volumes"])
