"""Blocks every resource shares (database, storage, Job template, conditions), so they read alike."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from pgwarden.api.base import ApiModel

API_GROUP = "pgwarden.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
CATEGORY = "pgwarden"

# A Manual DatabaseMigration waits in AwaitingApproval until this annotation is "true".
APPROVED_ANNOTATION = f"{API_GROUP}/approved"

# Kubernetes object names (Secrets, ConfigMaps, claims): DNS-1123 subdomains.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]


def exactly_one_rule(fields: list[str]) -> str:
    """A CEL expression true when exactly one of `fields` is set on `self`."""
    return " + ".join(f"(has(self.{name}) ? 1 : 0)" for name in fields) + " == 1"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; the message is what `kubectl apply` shows, after `field_path`."""
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


def validations(*rules: JsonDict) -> JsonDict:
    """`json_schema_extra` carrying CEL rules into the CRD, next to the pydantic validator they mirror."""
    return {"x-kubernetes-validations": list(rules)}


def count_set(model: BaseModel, fields: list[str]) -> int:
    """How many of `fields` (Python names) are set (not None) on `model`."""
    return sum(getattr(model, name) is not None for name in fields)


class SecretRef(ApiModel):
    """A Secret in the resource's namespace."""

    name: ObjectName = Field(description="Name of the Secret.")


class SecretKeyRef(ApiModel):
    """One key of a Secret in the resource's namespace."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: str = Field(default="ca.crt", max_length=253, description="Key in the Secret.")


class SslMode(StrEnum):
    """libpq's sslmode."""

    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class DatabaseRef(ApiModel):
    """How to reach the database: a Secret with the connection details, read only by the Job's pod."""

    secret_ref: SecretRef = Field(
        description=(
            "Secret holding either the key `uri` (postgresql://user:password@host:5432/dbname) or the keys "
            "`host`, `port`, `dbname`, `user` and `password`. The operator never reads it; "
            "Jobs receive the keys as environment variables."
        )
    )
    ssl_mode: SslMode | None = Field(
        default=None,
        description="libpq sslmode. When unset, the Secret's uri decides, else libpq's default (prefer).",
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the CA certificate (PEM) that verify-ca and verify-full trust.",
    )


class WebIdentity(ApiModel):
    """The Job's own ServiceAccount as its storage identity: a token projected for `audience`, exchanged by
    boto3's web-identity provider (AssumeRoleWithWebIdentity) for short-lived credentials of `roleArn`."""

    role_arn: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^arn:[a-z0-9-]+:iam:[^:]*:[^:]*:role/.+$",
        description=(
            "The role to assume, e.g. arn:aws:iam::123456789012:role/backups (AWS) or "
            "arn:minio:iam:::role/<id> (MinIO, printed at its start for an OpenID provider with a role policy)."
        ),
    )
    audience: str = Field(
        default="sts.amazonaws.com",
        min_length=1,
        max_length=253,
        description=(
            "The audience (aud) of the projected ServiceAccount token: what the storage's identity provider "
            "expects (AWS: sts.amazonaws.com; MinIO: its OpenID client id)."
        ),
    )


class S3Credentials(ApiModel):
    """Credentials without a static key: the alternative to credentialsSecretRef."""

    web_identity: WebIdentity = Field(
        description=(
            "Exchange the Job's ServiceAccount token (projected with the given audience, valid for an hour "
            "and renewed by the kubelet) for short-lived credentials of a role. No key is stored anywhere."
        )
    )


class S3Storage(ApiModel):
    """An S3 bucket, or any S3-compatible server (MinIO, Ceph RGW, ...)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.credentialsSecretRef) && has(self.credentials))",
                "s3 takes credentialsSecretRef (static keys) or credentials.webIdentity, not both",
            )
        )
    )

    bucket: str = Field(min_length=3, max_length=63, description="Bucket name.")
    prefix: str = Field(
        default="",
        max_length=1024,
        description=(
            "Key prefix under which backups are written, e.g. `shop/`. A DatabaseBackup writes into its own "
            "folder `<prefix>/<namespace>/<name>/` and prunes and restores only the backups it made there, so "
            "resources sharing a bucket and prefix never touch each other's. Backups written directly under "
            "the prefix before per-resource folders stay there: restorable, never pruned by the operator. A "
            "DatabaseRestore location and a migration's backupBefore use the prefix as given."
        ),
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="Endpoint URL of an S3-compatible server, e.g. http://minio.storage.svc:9000. Unset: AWS.",
    )
    region: str | None = Field(default=None, max_length=64, description="Region, e.g. eu-central-1.")
    force_path_style: bool = Field(
        default=False,
        description="Address the bucket as endpoint/bucket instead of bucket.endpoint (MinIO needs true).",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret with the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and optionally "
            "`AWS_SESSION_TOKEN`). Unset: credentials.webIdentity, else the pod's ambient credentials."
        ),
    )
    credentials: S3Credentials | None = Field(
        default=None,
        description="Credentials by identity instead of a key Secret: {webIdentity: {roleArn, audience}}.",
    )

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> S3Storage:
        if self.credentials_secret_ref is not None and self.credentials is not None:
            raise ValueError(
                "s3 takes credentialsSecretRef (static keys) or credentials.webIdentity, not both"
            )
        return self


class VolumeStorage(ApiModel):
    """A PersistentVolumeClaim mounted into the Job's pod."""

    claim_name: ObjectName = Field(description="PersistentVolumeClaim in the resource's namespace.")
    path: str = Field(
        default="",
        max_length=1024,
        description=(
            "Directory inside the volume under which backups are written. A DatabaseBackup writes into its "
            "own folder `<path>/<namespace>/<name>/`, as with an S3 prefix."
        ),
    )


class StorageSpec(ApiModel):
    """Where backups live: exactly one of `s3` or `volume`."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(exactly_one_rule(["s3", "volume"]), "storage needs exactly one of s3 or volume")
        )
    )

    s3: S3Storage | None = Field(default=None, description="An S3 or S3-compatible bucket.")
    volume: VolumeStorage | None = Field(default=None, description="A PersistentVolumeClaim.")

    @model_validator(mode="after")
    def _one_kind(self) -> StorageSpec:
        if count_set(self, ["s3", "volume"]) != 1:
            raise ValueError("storage needs exactly one of s3 or volume")
        return self


Quantity = int | str


class ResourceRequirements(ApiModel):
    """CPU and memory for the Job's container, as in a Pod spec."""

    limits: dict[str, Quantity] = Field(default_factory=dict, description="e.g. {cpu: '2', memory: 1Gi}.")
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="e.g. {cpu: 500m, memory: 256Mi}."
    )


class Toleration(ApiModel):
    """A Pod toleration, as in a Pod spec."""

    key: str | None = Field(default=None, description="Taint key to tolerate; empty with Exists: all taints.")
    operator: str | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(default=None, description="Taint value to match with Equal.")
    effect: str | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty: all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays once tainted."
    )


class JobTemplate(ApiModel):
    """Settings of the Jobs pgwarden creates for this resource."""

    resources: ResourceRequirements | None = Field(default=None, description="Container resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(default=None, description="Pod affinity, as in a Pod spec.")
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="ServiceAccount of the Job's pod (its token is never mounted). Unset: the namespace's default.",
    )
    image: str | None = Field(
        default=None, max_length=1024, description="Job image override. Unset: the operator's own image."
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Stop the Job after this many seconds, so a hung run cannot block a schedule for ever. Unset: the "
            "operator's default (the chart's `jobActiveDeadlineSeconds`, 6 hours unless changed)."
        ),
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A condition in the standard Kubernetes (metav1.Condition) shape."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of condition in CamelCase, e.g. Ready.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )
    last_transition_time: datetime = Field(description="When the condition last changed status.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A programmatic identifier in CamelCase for the last transition.",
    )
    message: str = Field(max_length=32768, description="A human-readable message about the transition.")


# Conditions keyed by type, as Kubernetes lists them (`kubectl wait --for=condition=Ready` reads them).
CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ResourceStatus(ApiModel):
    """What the status of every pgwarden resource says, whatever its kind: the decision the operator wrote
    last, for which generation, in conditions Kubernetes tools read, and the Job it concerns."""

    observed_generation: int | None = Field(default=None, description="The generation the status describes.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready and the kind's own.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
    job: str | None = Field(default=None, description="Name of the Job of the last run.")
    message: str | None = Field(default=None, description="A one-line summary or the error.")

    def to_status(self) -> dict[str, Any]:
        """The JSON written to the resource's status: the fields the operator set (an empty list it set
        stays, so "nothing pending" reads as such), none left unset or null."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


class RunStatus(ResourceStatus):
    """The status of a resource that runs one Job per generation (a migration, a restore): when it ran."""

    started_at: datetime | None = Field(default=None, description="When the Job started (UTC).")
    completed_at: datetime | None = Field(default=None, description="When the Job finished (UTC).")
    duration_seconds: float | None = Field(default=None, description="How long the work took.")


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata pgwarden reads; everything else is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def owner_reference(kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, object]:
    """An ownerReference to a pgwarden resource, so Kubernetes deletes what it owns along with it."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }
