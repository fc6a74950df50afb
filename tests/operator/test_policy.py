"""The operator's policy: which images and ServiceAccounts a resource may ask its Jobs to use."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.common import StorageSpec
from pgwarden.api.migration import DatabaseMigration
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import RestoreSource
from pgwarden.operator import command as operator_cmd
from pgwarden.operator import jobs
from pgwarden.operator.policy import (
    ALLOW_IMAGE_OVERRIDE,
    JOB_IMAGES,
    MIGRATION_IMAGES,
    SERVICE_ACCOUNTS,
    Policy,
    PolicyDenied,
    PolicySettingError,
    check,
    enforce,
    image_allowed,
    image_entry,
    split_image,
)

Obj = dict[str, Any]
OWN = "ghcr.io/pgwarden/pgwarden:1.0.0"
JOB_ACCOUNT = "pgwarden-job"
DIGEST = "sha256:" + "ab" * 32


def migration(resource: Callable[..., Obj], **job_template: str) -> DatabaseMigration:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["jobTemplate"] = dict(job_template)
    return DatabaseMigration.model_validate(body)


def from_image(resource: Callable[..., Obj], image: str) -> DatabaseMigration:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"] = {"image": {"image": image, "path": "/sql"}}
    return DatabaseMigration.model_validate(body)


def violations(resource: Any, policy: Policy) -> list[str]:
    return [
        v.setting.value for v in check(resource, policy, operator_image=OWN, job_service_account=JOB_ACCOUNT)
    ]


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("busybox", ("busybox", None, None)),
        ("registry.example:5000/team/app:1.2", ("registry.example:5000/team/app", "1.2", None)),
        (f"registry.example/app@{DIGEST}", ("registry.example/app", None, DIGEST)),
        (f"registry.example/app:7@{DIGEST}", ("registry.example/app", "7", DIGEST)),
        ("localhost:5000/app", ("localhost:5000/app", None, None)),
    ],
)
def test_an_image_reference_splits_into_repository_tag_and_digest(
    image: str, parts: tuple[str, str | None, str | None]
) -> None:
    assert split_image(image) == parts


def test_a_repository_entry_allows_any_tag_or_digest_of_exactly_that_repository() -> None:
    entries = ["registry.example/team/pgwarden"]
    assert image_allowed("registry.example/team/pgwarden:2", entries)
    assert image_allowed(f"registry.example/team/pgwarden@{DIGEST}", entries)
    assert image_allowed("registry.example/team/pgwarden", entries)
    assert not image_allowed("registry.example/team/pgwarden-evil:2", entries)
    assert not image_allowed("registry.example/team/pgwarden/sub:2", entries)
    assert not image_allowed("evil.example/registry.example/team/pgwarden:2", entries)


def test_a_digest_entry_allows_that_digest_only() -> None:
    entries = [f"registry.example/app@{DIGEST}"]
    assert image_allowed(f"registry.example/app@{DIGEST}", entries)
    assert image_allowed(f"registry.example/app:1@{DIGEST}", entries)
    assert not image_allowed("registry.example/app:1", entries)
    assert not image_allowed("registry.example/app@sha256:" + "cd" * 32, entries)


def test_a_prefix_entry_stops_at_a_path_boundary() -> None:
    entries = ["registry.example/team/*"]
    assert image_allowed("registry.example/team/app:1", entries)
    assert image_allowed("registry.example/team/sub/app:1", entries)
    assert not image_allowed("registry.example/teammate/app:1", entries)
    assert not image_allowed("registry.example.evil/team/app:1", entries)
    assert image_allowed("anything.example/at/all:1", ["*"])
    assert not image_allowed("anything:1", [])


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("registry.example/app:1.2", "names a tag"),
        ("", "empty"),
        ("registry.example/*/app", "'*'"),
        ("registry.example/app@sha256:nothex", "digest"),
        ("*/", "'*'"),
    ],
)
def test_an_allowlist_entry_that_cannot_be_enforced_is_refused_with_how_to_write_it(
    entry: str, says: str
) -> None:
    with pytest.raises(PolicySettingError, match=says):
        image_entry(entry)
    with pytest.raises(PolicySettingError):
        Policy(allow_image_override=True, job_images=(entry,))


def test_by_default_a_resource_asking_nothing_special_is_allowed(resource: Callable[..., Obj]) -> None:
    for file, model in (
        ("migration-shop.yaml", DatabaseMigration),
        ("backup-nightly.yaml", DatabaseBackup),
        ("restore.yaml", DatabaseRestore),
    ):
        body = resource(file, model.__name__)
        assert violations(model.model_validate(body), Policy()) == []


def test_the_operators_own_image_and_job_account_are_always_allowed(resource: Callable[..., Obj]) -> None:
    asked = migration(resource, image=OWN, serviceAccountName=JOB_ACCOUNT)
    assert violations(asked, Policy()) == []


def test_by_default_an_image_override_is_refused_naming_the_override_setting(
    resource: Callable[..., Obj],
) -> None:
    asked = migration(resource, image="registry.example/team/pgwarden:2")
    (violation,) = check(asked, Policy(), operator_image=OWN)
    assert violation.setting == ALLOW_IMAGE_OVERRIDE
    assert violation.field == "spec.jobTemplate.image"
    assert (
        "policy.allowImageOverride" in violation.message and "--allow-job-image-override" in violation.message
    )
    assert "registry.example/team/pgwarden:2" in violation.message and OWN in violation.message


def test_with_overrides_on_only_listed_images_are_allowed(resource: Callable[..., Obj]) -> None:
    policy = Policy(allow_image_override=True, job_images=("registry.example/team/pgwarden",))
    assert violations(migration(resource, image="registry.example/team/pgwarden:2"), policy) == []
    (violation,) = check(migration(resource, image="evil.example/miner:1"), policy, operator_image=OWN)
    assert violation.setting == JOB_IMAGES
    assert "policy.jobImages" in violation.message and "--allowed-job-image" in violation.message
    assert "registry.example/team/pgwarden" in violation.message, "names what is allowed"


def test_a_service_account_outside_the_allowed_set_is_refused(resource: Callable[..., Obj]) -> None:
    (violation,) = check(
        migration(resource, serviceAccountName="cloud-admin"),
        Policy(),
        operator_image=OWN,
        job_service_account=JOB_ACCOUNT,
    )
    assert violation.setting == SERVICE_ACCOUNTS
    assert "cloud-admin" in violation.message and "policy.serviceAccounts" in violation.message
    assert JOB_ACCOUNT in violation.message
    allowed = Policy(service_accounts=("backup-writer",))
    assert violations(migration(resource, serviceAccountName="backup-writer"), allowed) == []
    assert violations(migration(resource, serviceAccountName="cloud-admin"), allowed) == [
        "policy.serviceAccounts"
    ]


def test_migration_images_are_refused_unless_listed(resource: Callable[..., Obj]) -> None:
    image = "registry.example/shop-migrations:7"
    (violation,) = check(from_image(resource, image), Policy(), operator_image=OWN)
    assert violation.setting == MIGRATION_IMAGES
    assert violation.field == "spec.migrations.image.image"
    assert "policy.migrationImages" in violation.message and "configMapRefs" in violation.message
    listed = Policy(migration_images=("registry.example/shop-migrations",))
    assert violations(from_image(resource, image), listed) == []
    # The Job image list does not let a migration image in, nor the other way round.
    crossed = Policy(allow_image_override=True, job_images=("registry.example/shop-migrations",))
    assert violations(from_image(resource, image), crossed) == ["policy.migrationImages"]


def test_every_kind_is_checked_and_every_violation_is_named(resource: Callable[..., Obj]) -> None:
    for file, model in (("backup-nightly.yaml", DatabaseBackup), ("restore.yaml", DatabaseRestore)):
        body = resource(file, model.__name__)
        body["spec"]["jobTemplate"] = {"image": "evil.example/x:1", "serviceAccountName": "cloud-admin"}
        asked = model.model_validate(body)
        assert violations(asked, Policy()) == ["policy.allowImageOverride", "policy.serviceAccounts"]
        with pytest.raises(PolicyDenied) as denied:
            enforce(asked, Policy(), operator_image=OWN, job_service_account=JOB_ACCOUNT)
        assert len(denied.value.violations) == 2
        assert "evil.example/x:1" in str(denied.value) and "cloud-admin" in str(denied.value)
    enforce(migration(resource), Policy(), operator_image=OWN)  # nothing asked: no exception


def operator_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    operator_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["operator", *argv])


def test_the_operator_flags_set_the_policy_and_an_unenforceable_entry_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in operator_cmd.POLICY_ENV.values():
        monkeypatch.delenv(variable, raising=False)
    assert operator_cmd.job_policy(operator_args()) == Policy(), "nothing given: nothing beyond the defaults"
    args = operator_args(
        "--allow-job-image-override",
        "--allowed-job-image=registry.example/team/pgwarden",
        "--allowed-job-image=registry.example/mirror/*",
        f"--allowed-migration-image=registry.example/shop-migrations@{DIGEST}",
        "--allowed-service-account=backup-writer",
        f"--job-service-account={JOB_ACCOUNT}",
    )
    assert operator_cmd.job_policy(args) == Policy(
        allow_image_override=True,
        job_images=("registry.example/team/pgwarden", "registry.example/mirror/*"),
        migration_images=(f"registry.example/shop-migrations@{DIGEST}",),
        service_accounts=("backup-writer",),
    )
    assert args.job_service_account == JOB_ACCOUNT
    with pytest.raises(SystemExit) as refused:
        operator_args("--allowed-job-image=registry.example/team/pgwarden:2")
    assert refused.value.code == 2
    assert "names a tag" in capsys.readouterr().err
    # The environment variables stand in for absent flags (the e2e tests and `env:` of a Deployment).
    monkeypatch.setenv("PGWARDEN_ALLOWED_MIGRATION_IMAGES", "registry.example/a, registry.example/b/*")
    monkeypatch.setenv("PGWARDEN_ALLOW_JOB_IMAGE_OVERRIDE", "true")
    policy = operator_cmd.job_policy(operator_args())
    assert policy.migration_images == ("registry.example/a", "registry.example/b/*")
    assert policy.allow_image_override is True
    monkeypatch.setenv("PGWARDEN_ALLOWED_JOB_IMAGES", "registry.example/a:latest")
    assert operator_cmd.run(operator_args()) == 2, "refused before the operator starts"
    assert "names a tag" in capsys.readouterr().err


# -- the Jobs the operator builds ----------------------------------------------------------------------


def built(resource: Callable[..., Obj], settings: jobs.JobSettings) -> dict[str, Obj]:
    """The pod template of every Job shape: each kind, each migrations source, a CA, S3 credentials."""
    s3 = {"s3": {"bucket": "backups", "prefix": "p/", "credentialsSecretRef": {"name": "s3-credentials"}}}
    pods: dict[str, Obj] = {}
    for source in (
        {"configMapRefs": [{"name": "a"}, {"name": "b"}]},
        {"image": {"image": "registry.example/shop-migrations:7"}},
        {"inline": [{"name": "0001_init.sql", "sql": "CREATE TABLE t (id int);"}]},
    ):
        body = resource("migration-shop.yaml", "DatabaseMigration")
        body["spec"].update(migrations=source, backupBefore={"storage": s3})
        body["spec"]["database"]["caSecretRef"] = {"name": "db-ca"}
        job = jobs.migration_job(DatabaseMigration.model_validate(body), settings)
        pods[f"migration-{next(iter(source))}"] = job["spec"]["template"]
    backup = DatabaseBackup.model_validate(resource("backup-nightly.yaml", "DatabaseBackup"))
    cronjob = jobs.backup_cronjob(backup, settings)
    pods["backup-scheduled"] = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    one_time = backup.model_copy(update={"spec": backup.spec.model_copy(update={"schedule": None})})
    pods["backup"] = jobs.backup_job(one_time, settings)["spec"]["template"]
    restore = DatabaseRestore.model_validate(resource("restore.yaml", "DatabaseRestore"))
    source_of = RestoreSource(storage=StorageSpec.model_validate(s3), location="p/x")
    pods["restore"] = jobs.restore_job(restore, source_of, settings)["spec"]["template"]
    return pods


def permissive() -> jobs.JobSettings:
    # The migration image source must be allowed to be built at all.
    return jobs.JobSettings(image=OWN, policy=Policy(migration_images=("registry.example/shop-migrations",)))


def test_jobs_get_only_the_secret_keys_they_need_from_their_own_namespace(
    resource: Callable[..., Obj],
) -> None:
    """secretKeyRef one key at a time and Secret volumes with named items: never envFrom, never a whole
    Secret, and no reference can name another namespace (a Pod's references are its own namespace's)."""
    for name, pod in built(resource, permissive()).items():
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            assert "envFrom" not in container, name
            for variable in container.get("env", []):
                source = variable.get("valueFrom")
                if source is not None:
                    assert set(source) == {"secretKeyRef"}, (name, variable)
                    assert set(source["secretKeyRef"]) <= {"name", "key", "optional"}, (name, variable)
        for volume in pod["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["items"], (name, volume)
            for projected in (volume.get("projected") or {}).get("sources", []):
                assert "secret" not in projected or projected["secret"]["items"], (name, volume)
        assert pod["spec"]["automountServiceAccountToken"] is False, name


def test_no_job_or_cronjob_is_built_for_a_resource_outside_the_policy(resource: Callable[..., Obj]) -> None:
    settings = jobs.JobSettings(image=OWN)
    with pytest.raises(PolicyDenied, match=r"policy\.migrationImages"):
        built(resource, settings)
    for file, kind in (("backup-nightly.yaml", "DatabaseBackup"), ("restore.yaml", "DatabaseRestore")):
        body = resource(file, kind)
        body["spec"]["jobTemplate"] = {"serviceAccountName": "cloud-admin"}
        with pytest.raises(PolicyDenied, match=r"policy\.serviceAccounts"):
            if kind == "DatabaseBackup":
                jobs.backup_cronjob(DatabaseBackup.model_validate(body), settings)
            else:
                source = RestoreSource(storage=StorageSpec.model_validate({"volume": {"claimName": "x"}}))
                jobs.restore_job(DatabaseRestore.model_validate(body), source, settings)


def test_jobs_run_as_the_job_service_account_unless_the_resource_names_an_allowed_one(
    resource: Callable[..., Obj],
) -> None:
    policy = Policy(service_accounts=("backup-writer",))
    settings = jobs.JobSettings(image=OWN, service_account=JOB_ACCOUNT, policy=policy)
    pod = jobs.migration_job(migration(resource), settings)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == JOB_ACCOUNT
    pod = jobs.migration_job(migration(resource, serviceAccountName="backup-writer"), settings)
    assert pod["spec"]["template"]["spec"]["serviceAccountName"] == "backup-writer"
    assert (
        "serviceAccountName"
        not in jobs.migration_job(migration(resource), jobs.JobSettings())["spec"]["template"]["spec"]
    )
