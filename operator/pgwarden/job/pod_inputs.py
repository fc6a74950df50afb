"""What a backup or drill Job's pod was given besides its task and database: the age keys (one Secret key
each, the identity as a projected file) and each copy's storage with its own endpoint and credentials."""

from __future__ import annotations

import os
from pathlib import Path

from pgwarden.api.backup import DatabaseBackupSpec
from pgwarden.api.task import (
    AGE_RECIPIENTS_ENV,
    COPIES_ROOT,
    IDENTITY_DIR,
    IDENTITY_FILE,
    ROLE_ARN_ENV,
    TOKEN_FILE_ENV,
    copy_env,
)
from pgwarden.engine.backup.encryption import load_identities
from pgwarden.engine.backup.stored_dump import Identities
from pgwarden.errors import BadInput
from pgwarden.redact import register_secret, register_token_file
from pgwarden.storage import Storage, open_storage
from pgwarden.storage.location import S3Location, WebIdentityFile, parse_location, s3_client
from pgwarden.storage.s3 import S3Storage, client_config

COPIES_ROOT_ENV = "PGWARDEN_COPIES_ROOT"  # tests put the copies' volumes somewhere writable
IDENTITY_FILE_ENV = "PGWARDEN_IDENTITY_FILE"  # and the mounted identity file


def recipients(spec: DatabaseBackupSpec) -> list[str]:
    """The age public keys the backup is sealed to, one a line in their Secret's key (`#` lines are comments);
    BadInput naming the Secret when it holds none."""
    if spec.encryption is None:
        return []
    keys = [
        line.strip()
        for line in os.environ.get(AGE_RECIPIENTS_ENV, "").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if not keys:
        ref = spec.encryption.recipients_secret_ref
        raise BadInput(
            f"Secret {ref.name!r} key {ref.key!r} holds no age recipient; put the public keys (age1…, one a "
            "line) there, e.g. the line age-keygen -y prints for an identity"
        )
    return keys


def identities() -> Identities:
    """The age identity the operator mounted (one key of its Secret); masked in every output. Tests point
    PGWARDEN_IDENTITY_FILE elsewhere."""
    return load_identities(os.environ.get(IDENTITY_FILE_ENV) or Path(IDENTITY_DIR) / IDENTITY_FILE)


def copy_storage(index: int, spec: DatabaseBackupSpec) -> Storage:
    """Storage of copy `index` with its own settings: an S3 copy on its endpoint with its own credentials
    (PGWARDEN_COPY_<index>_AWS_*: keys, or a role and token file; none: the pod's ambient ones), a volume
    copy on its mounted claim."""
    target = spec.copies[index].storage
    if target.volume is not None:
        root = Path(os.environ.get(COPIES_ROOT_ENV, COPIES_ROOT)) / str(index)
        return open_storage(str(root / target.volume.path.strip("/")))
    s3 = target.s3
    assert s3 is not None
    location = parse_location(
        f"s3://{s3.bucket}/{s3.prefix.strip('/')}".rstrip("/"),
        endpoint=s3.endpoint,
        region=s3.region,
        force_path_style=s3.force_path_style or None,
    )
    assert isinstance(location, S3Location)
    if s3.credentials is not None:  # the Job ServiceAccount's token projected for this copy's audience
        role_arn = os.environ.get(copy_env(index, ROLE_ARN_ENV), s3.credentials.web_identity.role_arn)
        token_file = os.environ.get(copy_env(index, TOKEN_FILE_ENV), "")
        register_token_file(token_file)
        return S3Storage(
            s3_client(location, WebIdentityFile(role_arn, token_file)), location.bucket, location.prefix
        )
    keys = {
        name: os.environ.get(copy_env(index, name))
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    if not keys["AWS_ACCESS_KEY_ID"]:
        return S3Storage(s3_client(location), location.bucket, location.prefix)
    for value in keys.values():
        register_secret(value)
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys["AWS_SESSION_TOKEN"],
    )
    client = session.client(
        "s3",
        endpoint_url=location.endpoint,
        region_name=location.region or "us-east-1",
        config=client_config(addressing_style=location.addressing_style),
    )
    return S3Storage(client, location.bucket, location.prefix)
