"""What a resource may ask the operator to run: which images and which ServiceAccount, checked before a Job is built.

Whoever may create a DatabaseMigration could otherwise run any image, under any ServiceAccount of the
namespace, next to its database Secrets. The operator's settings (flags of `pgwarden operator`, the chart's
`policy:` values) say what is allowed; `check` names each request outside them and the setting that would
allow it. The chart's ValidatingAdmissionPolicy applies the same rules at `kubectl apply`, in CEL: keep
`image_allowed` and the CEL in charts/pgwarden/templates/validatingadmissionpolicy.yaml alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from pgwarden.errors import BadInput

if TYPE_CHECKING:  # the models are loaded by `check`, not by `pgwarden operator --help` (its flags are here)
    from pgwarden.api.backup import DatabaseBackup
    from pgwarden.api.migration import DatabaseMigration
    from pgwarden.api.migration_set import DatabaseMigrationSet
    from pgwarden.api.restore import DatabaseRestore

    Resource: TypeAlias = DatabaseMigration | DatabaseBackup | DatabaseRestore | DatabaseMigrationSet

# The condition reason and Event reason of a resource the policy refuses.
REASON = "PolicyDenied"
ANY = "*"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


@dataclass(frozen=True)
class Setting:
    """One policy setting, by its chart value and by its `pgwarden operator` flag."""

    value: str
    flag: str

    def __str__(self) -> str:
        return f"{self.value} (flag {self.flag})"


ALLOW_IMAGE_OVERRIDE = Setting("policy.allowImageOverride", "--allow-job-image-override")
JOB_IMAGES = Setting("policy.jobImages", "--allowed-job-image")
MIGRATION_IMAGES = Setting("policy.migrationImages", "--allowed-migration-image")
SERVICE_ACCOUNTS = Setting("policy.serviceAccounts", "--allowed-service-account")


class PolicySettingError(BadInput):
    """A policy setting the operator cannot enforce as written; the message says how to write it."""


class PolicyDenied(BadInput):
    """The resource asks for what the policy does not allow: no Job is built; the message names the settings."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(v.message for v in self.violations))


@dataclass(frozen=True)
class Violation:
    """One field of a spec outside the policy, and the setting that would allow it."""

    field: str
    value: str
    setting: Setting
    message: str


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference as written: `registry:5000/team/app:1.2@sha256:…`.

    No Docker Hub normalisation (`busybox` is not `docker.io/library/busybox`): an allowlist entry matches
    the repository exactly as specs write it, so a spelling the list does not hold is refused, never let in.
    """
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def image_entry(entry: str) -> str:
    """An allowlist entry, checked: `*`, `registry/team/*`, a repository, or a repository pinned to a digest."""
    text = entry.strip()
    if not text:
        raise PolicySettingError(
            "an empty image allowlist entry; write a repository, e.g. registry.example/team/app"
        )
    if text == ANY:
        return text
    if text.endswith("/*"):
        if "*" in text[:-2] or "@" in text or not text[:-2]:
            raise PolicySettingError(f"{entry!r}: a prefix entry is a registry or path followed by /*")
        return text
    if "*" in text:
        raise PolicySettingError(f"{entry!r}: '*' may only stand alone or end an entry as /*")
    repository, tag, digest = split_image(text)
    if not repository:
        raise PolicySettingError(f"{entry!r} names no repository")
    if digest is not None and not _DIGEST.match(digest):
        raise PolicySettingError(f"{entry!r}: the digest must look like sha256:<64 hex digits>")
    if tag is not None:
        raise PolicySettingError(
            f"{entry!r} names a tag, which can be moved to another image: list the repository "
            f"({repository}, any tag) or pin a digest ({repository}@sha256:…)"
        )
    return text


def image_allowed(image: str, entries: Iterable[str]) -> bool:
    """Whether `image` matches an allowlist entry: `*` any image; `prefix/*` any repository under the prefix;
    `repository` any tag or digest of it; `repository@digest` that digest only."""
    repository, _tag, digest = split_image(image)
    for entry in entries:
        if entry == ANY:
            return True
        if entry.endswith("/*"):
            if repository.startswith(entry[:-1]):
                return True
            continue
        allowed_repository, _, allowed_digest = entry.partition("@")
        if repository == allowed_repository and (not allowed_digest or digest == allowed_digest):
            return True
    return False


@dataclass(frozen=True)
class Policy:
    """What resources may ask for. The default allows nothing beyond the operator's own image and its Job
    ServiceAccount: overriding images, picking ServiceAccounts and migration images are each opted into."""

    allow_image_override: bool = False
    job_images: tuple[str, ...] = ()
    migration_images: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for entry in (*self.job_images, *self.migration_images):
            image_entry(entry)
        for account in self.service_accounts:
            if not account.strip():
                raise PolicySettingError("an empty ServiceAccount name in the allowed ServiceAccounts")


def _job_image(image: str, policy: Policy, operator_image: str) -> Violation | None:
    field = "spec.jobTemplate.image"
    if image == operator_image:
        return None
    if not policy.allow_image_override:
        return Violation(
            field,
            image,
            ALLOW_IMAGE_OVERRIDE,
            f"{field} {image} is not allowed: this operator runs Jobs only with its own image ({operator_image}); "
            f"remove {field}, or have the operator's administrators set {ALLOW_IMAGE_OVERRIDE} and list the "
            f"image's repository in {JOB_IMAGES}",
        )
    if image_allowed(image, policy.job_images):
        return None
    return Violation(
        field,
        image,
        JOB_IMAGES,
        f"{field} {image} is not in the allowed Job images ({', '.join(policy.job_images) or 'none'}); use "
        f"one of them, remove {field}, or have the operator's administrators add its repository to {JOB_IMAGES}",
    )


def _migration_image(image: str, policy: Policy) -> Violation | None:
    field = "spec.migrations.image.image"
    if image_allowed(image, policy.migration_images):
        return None
    return Violation(
        field,
        image,
        MIGRATION_IMAGES,
        f"{field} {image} is not in the allowed migration images "
        f"({', '.join(policy.migration_images) or 'none'}); use one of them or a ConfigMap "
        f"(spec.migrations.configMapRefs), or have the operator's administrators add its repository to "
        f"{MIGRATION_IMAGES}",
    )


def _service_account(account: str, policy: Policy, job_service_account: str | None) -> Violation | None:
    field = "spec.jobTemplate.serviceAccountName"
    allowed = {*policy.service_accounts, *([job_service_account] if job_service_account else [])}
    if account in allowed or ANY in allowed:
        return None
    return Violation(
        field,
        account,
        SERVICE_ACCOUNTS,
        f"{field} {account} is not allowed (allowed: {', '.join(sorted(allowed)) or 'none'}); remove it so the "
        f"Job runs as {job_service_account or 'the namespace default, with no token'}, or have the operator's "
        f"administrators add it to {SERVICE_ACCOUNTS}",
    )


def check(
    resource: Resource, policy: Policy, *, operator_image: str, job_service_account: str | None = None
) -> list[Violation]:
    """Each request of `resource` outside `policy`; empty when its Jobs may be built.

    `operator_image` (the Jobs' default image) and `job_service_account` (the Jobs' default account) are
    always allowed: asking for them is asking for nothing more."""
    from pgwarden.api.migration import DatabaseMigrationSpec
    from pgwarden.api.migration_set import DatabaseMigrationSet

    # A set's own Jobs (its drift checks) run under its template's jobTemplate, as its children's do.
    spec = resource.spec.template if isinstance(resource, DatabaseMigrationSet) else resource.spec
    template = spec.job_template
    found = [
        _job_image(template.image, policy, operator_image) if template.image else None,
        _service_account(template.service_account_name, policy, job_service_account)
        if template.service_account_name
        else None,
    ]
    if isinstance(spec, DatabaseMigrationSpec) and spec.migrations.image is not None:
        found.append(_migration_image(spec.migrations.image.image, policy))
    return [violation for violation in found if violation is not None]


def enforce(
    resource: Resource, policy: Policy, *, operator_image: str, job_service_account: str | None = None
) -> None:
    """Raise PolicyDenied, naming every violation, unless the policy allows what `resource` asks for."""
    violations = check(
        resource, policy, operator_image=operator_image, job_service_account=job_service_account
    )
    if violations:
        raise PolicyDenied(violations)
