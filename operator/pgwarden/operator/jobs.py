"""Pure builders of the Jobs and CronJobs that run `pgwarden job KIND`: manifests from a resource, no API calls.

Credentials reach the pod only through `secretKeyRef`, or as a ServiceAccount token projected for a storage's
web identity (its audience only, never the API token); the pod runs under the `restricted` Pod Security
profile with no API token mounted; everything else it needs is in the task (an env var) or mounted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from pgwarden import __version__
from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.common import (
    DatabaseRef,
    JobTemplate,
    SecretKeyRef,
    SslMode,
    StorageSpec,
    WebIdentity,
    owner_reference,
)
from pgwarden.api.durations import parse_duration
from pgwarden.api.encryption import IdentitySecretRef
from pgwarden.api.migration import DatabaseMigration, InlineMigration, MigrationsSource
from pgwarden.api.migration_set import DatabaseMigrationSet
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import (
    AGE_RECIPIENTS_ENV,
    CA_DIR,
    CA_FILE,
    COPIES_ROOT,
    DATABASE_SECRET_ENV,
    IDENTITY_DIR,
    IDENTITY_FILE,
    MIGRATIONS_DIR,
    REHEARSAL_SERVER_KEYS,
    ROLE_ARN_ENV,
    SCRATCH_DIR,
    STORAGE_ROOT,
    TASK_ENV,
    TERMINATION_LOG,
    TOKEN_FILE_ENV,
    WEB_IDENTITY_DIR,
    WEB_IDENTITY_TOKEN,
    JobKind,
    RehearsalTask,
    ResourceId,
    RestoreSource,
    Task,
    backup_scope,
    copy_env,
)
from pgwarden.errors import BadInput
from pgwarden.operator import naming
from pgwarden.operator.deadline import ACTIVE_DEADLINE_ENV as ACTIVE_DEADLINE_ENV
from pgwarden.operator.deadline import DEFAULT_ACTIVE_DEADLINE_SECONDS as DEFAULT_ACTIVE_DEADLINE_SECONDS
from pgwarden.operator.deadline import default_active_deadline
from pgwarden.operator.objects import Manifest
from pgwarden.operator.policy import Policy, enforce

Resource = DatabaseMigration | DatabaseBackup | DatabaseRestore | DatabaseMigrationSet

CONTAINER = "pgwarden"
NON_ROOT_UID = 65532  # the distroless "nonroot" user; numeric, so runAsNonRoot can be verified

# Secret keys -> the environment libpq reads. All optional: a Secret holds either `uri` or the keys,
# and the operator never reads Secrets to find out which; `pgwarden job` says clearly when neither is there.
DATABASE_KEYS = (
    ("DATABASE_URL", "uri"),
    ("PGHOST", "host"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
)
# Required keys: a missing S3 Secret or key stops the pod before it starts (CreateContainerConfigError).
S3_KEYS = (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_SESSION_TOKEN", True))


@dataclass(frozen=True)
class JobSettings:
    """Operator-wide settings of the Jobs it creates."""

    image: str = f"ghcr.io/pgwarden/pgwarden:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = NON_ROOT_UID
    backup_backoff_limit: int = 1
    starting_deadline_seconds: int = 300
    jobs_history_limit: int = 3
    # activeDeadlineSeconds of Jobs whose resource sets none; 0 means no deadline.
    active_deadline_seconds: int = field(default_factory=default_active_deadline)
    # ServiceAccount of Jobs whose resource names none (the chart's: no permissions, no token); None: the
    # namespace's default.
    service_account: str | None = None
    # What a resource may ask its Jobs to run; checked before any Job or CronJob is built.
    policy: Policy = field(default_factory=Policy)


def secret_env(name: str, secret: str, key: str, *, optional: bool) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}


def database_env(database: DatabaseRef | None) -> list[Manifest]:
    """libpq's environment from the database Secret; sslMode and the CA as libpq settings. None: a Job of
    many databases, which get their credentials under names of their own (a set's drift check)."""
    if database is None:
        return []
    secret = database.secret_ref.name
    env = [{"name": DATABASE_SECRET_ENV, "value": secret}]
    env += [secret_env(var, secret, key, optional=True) for var, key in DATABASE_KEYS]
    return env + ssl_env(database.ssl_mode, database.ca_secret_ref)


def ssl_env(ssl_mode: SslMode | None, ca_secret_ref: SecretKeyRef | None) -> list[Manifest]:
    """libpq's sslmode, and the CA certificate mounted by `ca_volume`."""
    env: list[Manifest] = []
    if ssl_mode is not None:
        env.append({"name": "PGSSLMODE", "value": str(ssl_mode)})
    if ca_secret_ref is not None:
        env.append({"name": "PGSSLROOTCERT", "value": f"{CA_DIR}/{CA_FILE}"})
    return env


def ca_volume(ref: SecretKeyRef) -> tuple[Manifest, Manifest]:
    """(volume, mount) of the CA certificate the database server is verified against: one key of its Secret."""
    volume = {"name": "ca", "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": CA_FILE}]}}
    return volume, {"name": "ca", "mountPath": CA_DIR, "readOnly": True}


def storage_env(storage: StorageSpec | None) -> list[Manifest]:
    """AWS_* from the bucket's credentials Secret, or the role and token file of its web identity; none
    for volumes or ambient credentials (IRSA)."""
    if storage is None or storage.s3 is None:
        return []
    if storage.s3.credentials is not None:
        return web_identity_env(storage.s3.credentials.web_identity, "storage", lambda name: name)
    if storage.s3.credentials_secret_ref is None:
        return []
    secret = storage.s3.credentials_secret_ref.name
    return [secret_env(key, secret, key, optional=optional) for key, optional in S3_KEYS]


# How long a projected storage token is valid; the kubelet renews it at 80 %, boto3 re-reads the file.
WEB_IDENTITY_TOKEN_SECONDS = 3600


def web_identity_env(identity: WebIdentity, folder: str, env_name: Callable[[str], str]) -> list[Manifest]:
    """The role and the token file boto3's web-identity provider reads, under the names `env_name` gives."""
    token_file = f"{WEB_IDENTITY_DIR}/{folder}/{WEB_IDENTITY_TOKEN}"
    return [
        {"name": env_name(ROLE_ARN_ENV), "value": identity.role_arn},
        {"name": env_name(TOKEN_FILE_ENV), "value": token_file},
    ]


def web_identity_volume(identity: WebIdentity, folder: str) -> tuple[Manifest, Manifest]:
    """(volume, mount) of the Job ServiceAccount's token for the identity's audience only: a projected
    volume, not the automounted API token (which stays off), so it opens the storage and nothing else."""
    name = f"web-identity-{folder}"
    volume = {
        "name": name,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": identity.audience,
                        "expirationSeconds": WEB_IDENTITY_TOKEN_SECONDS,
                        "path": WEB_IDENTITY_TOKEN,
                    }
                }
            ],
            "defaultMode": 0o440,
        },
    }
    return volume, {"name": name, "mountPath": f"{WEB_IDENTITY_DIR}/{folder}", "readOnly": True}


def volume_mounts_for(
    database: DatabaseRef | None, storage: StorageSpec | None
) -> tuple[list[Manifest], list[Manifest]]:
    """(volumes, mounts) for scratch space, the CA certificate and a storage volume."""
    volumes: list[Manifest] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[Manifest] = [{"name": "scratch", "mountPath": SCRATCH_DIR}]
    if database is not None and database.ca_secret_ref is not None:
        volume, mount = ca_volume(database.ca_secret_ref)
        volumes.append(volume)
        mounts.append(mount)
    if storage is not None and storage.volume is not None:
        volumes.append({"name": "storage", "persistentVolumeClaim": {"claimName": storage.volume.claim_name}})
        mounts.append({"name": "storage", "mountPath": STORAGE_ROOT})
    if storage is not None and storage.s3 is not None and storage.s3.credentials is not None:
        volume, mount = web_identity_volume(storage.s3.credentials.web_identity, "storage")
        volumes.append(volume)
        mounts.append(mount)
    return volumes, mounts


def container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(settings: JobSettings) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "fsGroup": settings.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# Linux caps one environment string (NAME=value) at 128 KiB; above it the container cannot start.
ENV_STRING_LIMIT = 128 * 1024


class TaskTooLarge(BadInput):
    """The task does not fit the environment variable that carries it; the spec must shrink."""


def _task_json(task: Task) -> str:
    """The task as compact JSON, UTF-8 as is (an escaped non-ASCII character would take 6 bytes, not 2-4)."""
    text = json.dumps(task.to_json_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    size = len(TASK_ENV) + 1 + len(text.encode())
    if size >= ENV_STRING_LIMIT:
        raise TaskTooLarge(
            f"the {task.kind} task is too large for the Job's environment ({size} bytes, the limit is "
            f"{ENV_STRING_LIMIT}): move inline migrations to a ConfigMap (configMapRefs) or an image"
        )
    return text


@dataclass(frozen=True)
class PodParts:
    """What differs between kinds: the task, the credentials, extra volumes and init containers."""

    task: Task
    database: DatabaseRef | None
    storage: StorageSpec | None
    template: JobTemplate
    volumes: tuple[Manifest, ...] = ()
    mounts: tuple[Manifest, ...] = ()
    init_containers: tuple[Manifest, ...] = ()
    env: tuple[Manifest, ...] = ()


def pod_template(
    resource: Resource, parts: PodParts, settings: JobSettings, generation: int | None
) -> Manifest:
    """The pod of a Job: one `pgwarden job KIND` container, restricted, no token, never restarted."""
    enforce(
        resource, settings.policy, operator_image=settings.image, job_service_account=settings.service_account
    )
    meta = resource.metadata
    template = parts.template
    volumes, mounts = volume_mounts_for(parts.database, parts.storage)
    container: Manifest = {
        "name": CONTAINER,
        "image": template.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["pgwarden", "job", str(parts.task.kind)],
        "env": [
            {"name": TASK_ENV, "value": _task_json(parts.task)},
            {"name": "TMPDIR", "value": SCRATCH_DIR},
            {"name": "HOME", "value": SCRATCH_DIR},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            *database_env(parts.database),
            *storage_env(parts.storage),
            *parts.env,
        ],
        "securityContext": container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [*mounts, *parts.mounts],
    }
    if template.resources is not None:
        container["resources"] = template.resources.to_json_dict()
    spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(settings),
        "containers": [container],
        "volumes": [*volumes, *parts.volumes],
    }
    if parts.init_containers:
        spec["initContainers"] = list(parts.init_containers)
    if template.service_account_name or settings.service_account:
        spec["serviceAccountName"] = template.service_account_name or settings.service_account
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = [t.to_json_dict() for t in template.tolerations]
    if template.affinity:
        spec["affinity"] = template.affinity
    return {
        "metadata": {
            "labels": naming.labels(resource.kind, meta.uid or "", generation),
            "annotations": naming.owner_annotations(resource.kind, meta.name or ""),
        },
        "spec": spec,
    }


def job_spec(
    resource: Resource, parts: PodParts, settings: JobSettings, *, backoff_limit: int, generation: int | None
) -> Manifest:
    spec: Manifest = {
        "backoffLimit": backoff_limit,
        "template": pod_template(resource, parts, settings, generation),
    }
    deadline = parts.template.active_deadline_seconds or settings.active_deadline_seconds
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return spec


def _owned(resource: Resource, name: str, kind: str, api_version: str, generation: int | None) -> Manifest:
    meta = resource.metadata
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": naming.labels(resource.kind, meta.uid or "", generation),
            "annotations": naming.owner_annotations(resource.kind, meta.name or ""),
            "ownerReferences": [owner_reference(resource.kind, meta.name or "", meta.uid or "")],
        },
    }


def _job(resource: Resource, parts: PodParts, settings: JobSettings, backoff_limit: int) -> Manifest:
    meta = resource.metadata
    name = naming.job_name(resource.kind, meta.name or "", meta.uid or "", meta.generation or 1)
    return _named_job(resource, name, parts, settings, backoff_limit)


def _named_job(
    resource: Resource, name: str, parts: PodParts, settings: JobSettings, backoff_limit: int
) -> Manifest:
    """The Job `name` of the resource's current generation, owned by it."""
    generation = resource.metadata.generation or 1
    job = _owned(resource, name, "Job", "batch/v1", generation)
    job["spec"] = job_spec(resource, parts, settings, backoff_limit=backoff_limit, generation=generation)
    return job


def resource_id(resource: Resource) -> ResourceId:
    """The resource a Job works for, as its task names it."""
    meta = resource.metadata
    return ResourceId(
        kind=resource.kind, namespace=meta.namespace or "", name=meta.name or "", generation=meta.generation
    )


def migration_sources(
    migration: DatabaseMigration,
) -> tuple[str | None, list[Manifest], list[Manifest], list[Manifest]]:
    """(migrations_dir, volumes, mounts, init containers) for the spec's migrations source."""
    source = migration.spec.migrations
    mount = {"name": "migrations", "mountPath": MIGRATIONS_DIR, "readOnly": True}
    if source.config_map_refs:
        if len(source.config_map_refs) == 1:
            volume: Manifest = {"name": "migrations", "configMap": {"name": source.config_map_refs[0].name}}
        else:
            volume = {
                "name": "migrations",
                "projected": {
                    "sources": [{"configMap": {"name": ref.name}} for ref in source.config_map_refs]
                },
            }
        return MIGRATIONS_DIR, [volume], [mount], []
    if source.image is not None:
        # The user's image copies its files into an emptyDir the migration container reads.
        copy = {
            "name": "migrations",
            "image": source.image.image,
            "command": ["sh", "-c", 'cp -R "$0"/. "$1"/', source.image.path, MIGRATIONS_DIR],
            "securityContext": container_security(),
            "volumeMounts": [{"name": "migrations", "mountPath": MIGRATIONS_DIR}],
        }
        return MIGRATIONS_DIR, [{"name": "migrations", "emptyDir": {}}], [mount], [copy]
    return None, [], [], []  # inline: the files travel in the task


def with_files(migration: DatabaseMigration, files: Sequence[InlineMigration]) -> DatabaseMigration:
    """The migration with `files` in place of its ConfigMaps: what an approved run carries in its task, so it
    runs the content approved, whatever the ConfigMaps hold when its pod starts. ValueError: too large."""
    spec = migration.spec.model_copy(update={"migrations": MigrationsSource(inline=list(files))})
    return migration.model_copy(update={"spec": spec})


def _migration_parts(migration: DatabaseMigration) -> PodParts:
    """The pod of a migration run: its files, its database and the pre-migration backup's storage."""
    directory, volumes, mounts, init = migration_sources(migration)
    backup = migration.spec.backup_before
    task = Task(
        kind=JobKind.MIGRATE,
        resource=resource_id(migration),
        migration=migration.spec,
        migrations_dir=directory,
    )
    return PodParts(
        task=task,
        database=migration.spec.database,
        storage=backup.storage if backup else None,
        template=migration.spec.job_template,
        volumes=tuple(volumes),
        mounts=tuple(mounts),
        init_containers=tuple(init),
    )


def migration_job(migration: DatabaseMigration, settings: JobSettings) -> Manifest:
    """The Job of one migration run: backoffLimit 0, since a failed run must not be retried blindly."""
    return _job(migration, _migration_parts(migration), settings, backoff_limit=0)


def preview_job(migration: DatabaseMigration, settings: JobSettings, digest: str | None = None) -> Manifest:
    """The read-only Job that plans and lints a generation awaiting approval: the run's files and database,
    nothing backed up (no storage) or applied (plan only)."""
    run = _migration_parts(migration)
    parts = replace(run, task=run.task.model_copy(update={"plan_only": True}), storage=None)
    meta = migration.metadata
    name = naming.preview_job_name(meta.name or "", meta.uid or "", meta.generation or 1, digest)
    return _named_job(migration, name, parts, settings, backoff_limit=0)


def rehearsal_job(
    migration: DatabaseMigration,
    source: RestoreSource,
    settings: JobSettings,
    digest: str | None = None,
    identity: IdentitySecretRef | None = None,
) -> Manifest:
    """The Job that only rehearses a generation: the backup's storage, the scratch server's Secret keys (never
    the pre-migration backup's storage: nothing is backed up), the same migrations and settings."""
    spec = migration.spec
    assert spec.rehearsal is not None
    directory, volumes, mounts, init = migration_sources(migration)
    rehearsal = spec.rehearsal
    limit = parse_duration(rehearsal.max_lock_hold).total_seconds() if rehearsal.max_lock_hold else None
    task = Task(
        kind=JobKind.MIGRATE,
        resource=resource_id(migration),
        migration=spec,
        migrations_dir=directory,
        rehearsal=RehearsalTask(
            source=source,
            max_lock_hold_seconds=limit,
            server=rehearsal.server is not None,
            sealed=identity is not None,
        ),
    )
    if identity is not None:  # a sealed backup: its identity, one key of its Secret, as a file
        volume, mount = identity_volume(identity)
        volumes, mounts = [*volumes, volume], [*mounts, mount]
    env: list[Manifest] = []
    if rehearsal.server is not None:
        secret = rehearsal.server.secret_ref.name
        env = [secret_env(var, secret, key, optional=True) for var, key in REHEARSAL_SERVER_KEYS]
    parts = PodParts(
        task=task,
        database=spec.database,
        storage=source.storage,
        template=spec.job_template,
        volumes=tuple(volumes),
        mounts=tuple(mounts),
        init_containers=tuple(init),
        env=tuple(env),
    )
    meta = migration.metadata
    name = naming.rehearsal_job_name(meta.name or "", meta.uid or "", meta.generation or 1, digest)
    return _named_job(migration, name, parts, settings, backoff_limit=0)


def identity_volume(ref: IdentitySecretRef) -> tuple[Manifest, Manifest]:
    """(volume, mount) of an age identity: the one key of its Secret, as a file only the pod's user reads."""
    volume = {
        "name": "age-identity",
        "secret": {
            "secretName": ref.name,
            "items": [{"key": ref.key, "path": IDENTITY_FILE}],
            "defaultMode": 0o440,
        },
    }
    return volume, {"name": "age-identity", "mountPath": IDENTITY_DIR, "readOnly": True}


def copy_parts(backup: DatabaseBackup) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """(env, volumes, mounts) of the backup's further copies: each S3 copy's own credentials under
    PGWARDEN_COPY_<i>_*, each volume copy's claim at COPIES_ROOT/<i>."""
    env: list[Manifest] = []
    volumes: list[Manifest] = []
    mounts: list[Manifest] = []
    for index, target in enumerate(backup.spec.copies):
        s3, volume = target.storage.s3, target.storage.volume
        if s3 is not None and s3.credentials_secret_ref is not None:
            secret = s3.credentials_secret_ref.name
            env += [secret_env(copy_env(index, key), secret, key, optional=opt) for key, opt in S3_KEYS]
        if s3 is not None and s3.credentials is not None:
            identity = s3.credentials.web_identity
            env += web_identity_env(identity, f"copy-{index}", functools.partial(copy_env, index))
            token_volume, token_mount = web_identity_volume(identity, f"copy-{index}")
            volumes.append(token_volume)
            mounts.append(token_mount)
        if volume is not None:
            volumes.append(
                {"name": f"copy-{index}", "persistentVolumeClaim": {"claimName": volume.claim_name}}
            )
            mounts.append({"name": f"copy-{index}", "mountPath": f"{COPIES_ROOT}/{index}"})
    return env, volumes, mounts


def _backup_parts(backup: DatabaseBackup) -> PodParts:
    """A backup's pod: the database, the storage, the copies' credentials and volumes, the recipients' key
    (and the identity when verify.restore must open what it sealed)."""
    meta = backup.metadata
    scope = backup_scope(meta.namespace or "", meta.name or "")
    env, volumes, mounts = copy_parts(backup)
    encryption = backup.spec.encryption
    if encryption is not None:
        ref = encryption.recipients_secret_ref
        env.append(secret_env(AGE_RECIPIENTS_ENV, ref.name, ref.key, optional=False))
        if backup.spec.verify.restore and encryption.identity_secret_ref is not None:
            volume, mount = identity_volume(encryption.identity_secret_ref)
            volumes.append(volume)
            mounts.append(mount)
    return PodParts(
        task=Task(kind=JobKind.BACKUP, resource=resource_id(backup), backup=backup.spec, backup_scope=scope),
        database=backup.spec.database,
        storage=backup.spec.storage,
        template=backup.spec.job_template,
        volumes=tuple(volumes),
        mounts=tuple(mounts),
        env=tuple(env),
    )


def backup_job(backup: DatabaseBackup, settings: JobSettings) -> Manifest:
    """The Job of a one-time backup (a DatabaseBackup without schedule)."""
    return _job(backup, _backup_parts(backup), settings, settings.backup_backoff_limit)


def schedule_cronjob(
    backup: DatabaseBackup,
    name: str,
    schedule: str,
    parts: PodParts,
    settings: JobSettings,
    *,
    backoff_limit: int,
    task_label: str | None = None,
) -> Manifest:
    """A CronJob of a DatabaseBackup (its backups', or its drills' with `task_label`): Kubernetes keeps the
    schedule, one run at a time (Forbid)."""
    meta = backup.metadata
    cronjob = _owned(backup, name, "CronJob", "batch/v1", None)
    labels = naming.labels(backup.kind, meta.uid or "", meta.generation)
    job = job_spec(backup, parts, settings, backoff_limit=backoff_limit, generation=meta.generation)
    if task_label is not None:
        for manifest in (cronjob["metadata"], job["template"]["metadata"]):
            manifest["labels"][TASK_LABEL] = task_label
        labels[TASK_LABEL] = task_label
    spec: Manifest = {
        "schedule": schedule,
        "suspend": backup.spec.suspend,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": settings.starting_deadline_seconds,
        "successfulJobsHistoryLimit": settings.jobs_history_limit,
        "failedJobsHistoryLimit": settings.jobs_history_limit,
        "jobTemplate": {
            "metadata": {
                "labels": labels,
                "annotations": naming.owner_annotations(backup.kind, meta.name or ""),
            },
            "spec": job,
        },
    }
    if backup.spec.time_zone:
        spec["timeZone"] = backup.spec.time_zone
    cronjob["spec"] = spec
    cronjob["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] = naming.spec_hash(cronjob)
    return cronjob


def unless_current(wanted: Manifest, current: Manifest | None) -> Manifest | None:
    """`wanted`, or None when `current` was built from the same spec (its spec-hash annotation): a CronJob is
    replaced only when what the resource asks of it changed."""
    annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
    hashed = wanted["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH]
    return None if annotations.get(naming.ANNOTATION_SPEC_HASH) == hashed else wanted


def backup_cronjob(backup: DatabaseBackup, settings: JobSettings) -> Manifest:
    """The CronJob of a scheduled backup: Kubernetes keeps the schedule, one run at a time."""
    meta = backup.metadata
    name = naming.cronjob_name(meta.name or "", meta.uid or "")
    assert backup.spec.schedule is not None
    return schedule_cronjob(
        backup,
        name,
        backup.spec.schedule,
        _backup_parts(backup),
        settings,
        backoff_limit=settings.backup_backoff_limit,
    )


# Drill Jobs (and their CronJob) carry this label, so the operator tells them from the backups' own.
TASK_LABEL = "pgwarden.io/task"
DRILL = str(JobKind.DRILL)


def is_drill(obj: Manifest) -> bool:
    """Whether a Job or CronJob of a DatabaseBackup is (or runs) its restore drill."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(TASK_LABEL) == DRILL


def restore_job(restore: DatabaseRestore, source: RestoreSource, settings: JobSettings) -> Manifest:
    """The Job of a restore, reading from `source` (a backupRef already resolved to its storage)."""
    task = Task(
        kind=JobKind.RESTORE, resource=resource_id(restore), restore=restore.spec, restore_source=source
    )
    volumes: tuple[Manifest, ...] = ()
    mounts: tuple[Manifest, ...] = ()
    if restore.spec.encryption is not None:
        volume, mount = identity_volume(restore.spec.encryption.identity_secret_ref)
        volumes, mounts = (volume,), (mount,)
    parts = PodParts(
        task=task,
        database=restore.spec.database,
        storage=source.storage,
        template=restore.spec.job_template,
        volumes=volumes,
        mounts=mounts,
    )
    return _job(restore, parts, settings, backoff_limit=0)


def recovery_job(
    resource: DatabaseMigration | DatabaseRestore, dead_job: str, settings: JobSettings
) -> Manifest:
    """The one Job that settles what `dead_job` left when it died without a report: `pgwarden job recover` with
    the resource's database and, for a migration, the storage of the backup a restore rollback reads."""
    if isinstance(resource, DatabaseMigration):
        backup = resource.spec.backup_before
        task = Task(
            kind=JobKind.RECOVER, resource=resource_id(resource), migration=resource.spec, recovers=dead_job
        )
        storage, database, template = (
            (backup.storage if backup else None),
            resource.spec.database,
            resource.spec.job_template,
        )
    else:
        task = Task(
            kind=JobKind.RECOVER, resource=resource_id(resource), restore=resource.spec, recovers=dead_job
        )
        storage, database, template = None, resource.spec.database, resource.spec.job_template
    parts = PodParts(task=task, database=database, storage=storage, template=template)
    job = _named_job(resource, naming.recovery_job_name(dead_job), parts, settings, backoff_limit=0)
    job["metadata"]["labels"][TASK_LABEL] = str(JobKind.RECOVER)  # its report is a RecoveryReport
    return job
