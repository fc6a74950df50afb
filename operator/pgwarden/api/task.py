"""The task a Job runs: the one contract between the operator that writes it and `pgwarden job` that reads it.

Pure data over `pgwarden.api` (no Kubernetes, no engine), so both sides import it. It carries the resource's
spec and what the operator resolved for it, never a secret: credentials arrive as env vars from Secrets.
"""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.backup import DatabaseBackupSpec
from pgwarden.api.base import ApiModel
from pgwarden.api.choices import JobKind as JobKind
from pgwarden.api.common import StorageSpec
from pgwarden.api.fleet_drift import DriftTask
from pgwarden.api.migration import DatabaseMigrationSpec
from pgwarden.api.restore import DatabaseRestoreSpec

# Environment variables the Job's container receives (credentials come from Secrets under libpq/AWS names).
TASK_ENV = "PGWARDEN_TASK"
TERMINATION_LOG_ENV = "PGWARDEN_TERMINATION_LOG"
DATABASE_SECRET_ENV = "PGWARDEN_DATABASE_SECRET"

# Where the Job's pod finds what the operator mounted.
TERMINATION_LOG = "/dev/termination-log"
MIGRATIONS_DIR = "/var/run/pgwarden/migrations"
STORAGE_ROOT = "/var/lib/pgwarden/storage"
CA_DIR = "/var/run/pgwarden/ca"
CA_FILE = "ca.crt"
SCRATCH_DIR = "/tmp"
# Sealing with age: the recipients' public keys arrive in an env var (one key of their Secret), an identity
# as one file projected from its Secret's key; copies' volumes are mounted under COPIES_ROOT/<index>.
AGE_RECIPIENTS_ENV = "PGWARDEN_AGE_RECIPIENTS"
IDENTITY_DIR = "/var/run/pgwarden/age"
IDENTITY_FILE = "identity"
COPIES_ROOT = "/var/lib/pgwarden/copies"
# Storage by identity (s3.credentials.webIdentity): the ServiceAccount token projected for its audience into
# WEB_IDENTITY_DIR/<storage>/token ("storage" for the storage, "copy-<i>" for copy i), named to boto3's
# web-identity provider by its standard variables (a copy's under copy_env).
WEB_IDENTITY_DIR = "/var/run/pgwarden/web-identity"
WEB_IDENTITY_TOKEN = "token"
ROLE_ARN_ENV = "AWS_ROLE_ARN"
TOKEN_FILE_ENV = "AWS_WEB_IDENTITY_TOKEN_FILE"


# A rehearsal's scratch server (spec.rehearsal.server): its Secret's keys under these names, never libpq's own.
REHEARSAL_SERVER_KEYS = (
    ("PGWARDEN_REHEARSAL_URI", "uri"),
    ("PGWARDEN_REHEARSAL_HOST", "host"),
    ("PGWARDEN_REHEARSAL_PORT", "port"),
    ("PGWARDEN_REHEARSAL_USER", "user"),
    ("PGWARDEN_REHEARSAL_PASSWORD", "password"),
)


def copy_env(index: int, name: str) -> str:
    """The env var of copy `index`'s S3 credential `name` (AWS_ACCESS_KEY_ID, ...): its own Secret's key."""
    return f"PGWARDEN_COPY_{index}_{name}"


def target_env(index: int | None, key: str) -> str:
    """The env var of a drift Job's target `index` (None: its reference) holding its Secret's key `key` (uri,
    host, ...): never libpq's own names, so each target connects with its own credentials and none inherited."""
    who = "REFERENCE" if index is None else f"TARGET_{index}"
    return f"PGWARDEN_{who}_{key.upper()}"


# The keys of a database Secret, as `spec.database.secretRef` takes them.
DATABASE_SECRET_KEYS = ("uri", "host", "port", "dbname", "user", "password")


# The compact report fits a container's termination message.
TERMINATION_MESSAGE_LIMIT = 4096


class ResourceId(ApiModel):
    """The resource a Job works for, named in its logs and reports."""

    kind: str
    namespace: str
    name: str
    generation: int | None = None


class BackupScope(ApiModel):
    """Whose backups a Job writes, prunes or restores, and where in the storage they live.

    A DatabaseBackup's backups go to `<namespace>/<name>/` under its storage's prefix (or volume path) and
    record it as their owner, so resources sharing a bucket and prefix never prune or restore each other's.
    """

    owner: str = Field(description="The owning resource, DatabaseBackup/<namespace>/<name>.")
    path: str = Field(description="The owner's folder relative to the storage's root: <namespace>/<name>.")


def backup_scope(namespace: str, name: str) -> BackupScope:
    """The scope of the DatabaseBackup `namespace/name`: its owner label and its own folder."""
    return BackupScope(owner=f"DatabaseBackup/{namespace}/{name}", path=f"{namespace}/{name}")


class RestoreSource(ApiModel):
    """Where a restore reads from, resolved by the operator (a backupRef becomes its DatabaseBackup's storage)."""

    storage: StorageSpec
    location: str | None = Field(
        default=None, description="A backup (or a prefix) relative to the storage's root; unset: its root."
    )
    backup_id: str | None = Field(default=None, description="A backup id under location; unset: the newest.")
    scope: BackupScope | None = Field(
        default=None,
        description="For a backupRef: the DatabaseBackup's folder and owner; only its backups are restored.",
    )
    last_known_id: str | None = Field(
        default=None,
        description=(
            "For a backupRef to latest: the backup the DatabaseBackup's status names, used when its folder "
            "holds none yet (its backups from before per-resource folders lie at the storage's root)."
        ),
    )


class RehearsalTask(ApiModel):
    """A rehearse-only migration Job: plan and lint on the database (read only), then the same run on a
    scratch copy restored from this backup; the database itself is never migrated by this Job."""

    source: RestoreSource = Field(description="The backup to restore into the scratch copy.")
    max_lock_hold_seconds: float | None = Field(
        default=None, description="A lock that blocks writes held longer fails the rehearsal."
    )
    server: bool = Field(
        default=False, description="The scratch server's Secret keys are in PGWARDEN_REHEARSAL_*."
    )
    sealed: bool = Field(default=False, description="An age identity is mounted to open a sealed backup.")


class Task(ApiModel):
    """Everything `pgwarden job KIND` needs besides credentials."""

    kind: JobKind
    resource: ResourceId
    migration: DatabaseMigrationSpec | None = None
    backup: DatabaseBackupSpec | None = Field(default=None, description="For a backup or a drill: its spec.")
    restore: DatabaseRestoreSpec | None = None
    restore_source: RestoreSource | None = None
    backup_scope: BackupScope | None = Field(
        default=None, description="For a backup: whose backups it makes and prunes, and where they go."
    )
    migrations_dir: str | None = Field(
        default=None, description="Directory of mounted migration files; unset for inline migrations."
    )
    rehearsal: RehearsalTask | None = Field(
        default=None, description="For a migration: rehearse only (the real run is another Job)."
    )
    drift: DriftTask | None = Field(default=None, description="For a drift check: its targets.")
    recovers: str | None = Field(
        default=None,
        description="For a recovery: the Job that died without a report (its migration or restore spec is "
        "carried too, for the database and the storage of the backup a rollback restores).",
    )
    plan_only: bool = Field(
        default=False,
        description="For a migration: plan and lint on the database, read only, before it is approved.",
    )
