"""Where backups live, as the user writes it: `s3://bucket/prefix` or a filesystem path, turned into Storage."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgwarden.storage.base import InvalidLocation, Storage, join_key
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.s3 import S3Storage, client_config

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    # None: path-style when a custom endpoint is set (what MinIO and most S3-compatible servers need).
    force_path_style: bool | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def addressing_style(self) -> str:
        path_style = self.force_path_style if self.force_path_style is not None else bool(self.endpoint)
        return "path" if path_style else "auto"


@dataclass(frozen=True)
class FilesystemLocation:
    path: Path

    @property
    def uri(self) -> str:
        return str(self.path)


Location = S3Location | FilesystemLocation


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def parse_location(
    uri: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    force_path_style: bool | None = None,
) -> Location:
    """Parse `s3://bucket/prefix`, `file:///path` or a path; S3 settings default from the environment
    (AWS_ENDPOINT_URL, AWS_REGION, PGWARDEN_S3_FORCE_PATH_STYLE)."""
    uri = uri.strip()
    if not uri:
        raise InvalidLocation("empty location; expected s3://bucket/prefix or a filesystem path")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            raise InvalidLocation(
                f"{uri!r} does not name a valid bucket; expected s3://bucket/prefix "
                "(bucket: 3-63 lowercase letters, digits, dots and hyphens)"
            )
        return S3Location(
            bucket=bucket,
            prefix=join_key(prefix),
            endpoint=endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            force_path_style=(
                force_path_style
                if force_path_style is not None
                else _env_flag("PGWARDEN_S3_FORCE_PATH_STYLE")
            ),
        )
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", uri):
        raise InvalidLocation(
            f"unsupported location {uri!r}; expected s3://bucket/prefix or a filesystem path"
        )
    return FilesystemLocation(Path(uri).expanduser().absolute())


@dataclass(frozen=True)
class WebIdentityFile:
    """A role to assume with the web-identity token in a file (a projected ServiceAccount token)."""

    role_arn: str
    token_file: str


def _web_identity_session(location: S3Location, identity: WebIdentityFile) -> Any:
    """A boto3 session whose credentials come from boto3's own web-identity fetcher for this role and token
    file (re-read at each refresh, as the kubelet renews it), asked of the location's STS endpoint (an
    S3-compatible server answers STS where it answers S3), ahead of any key in the environment."""
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleWithWebIdentityCredentialFetcher,
        CredentialProvider,
        DeferredRefreshableCredentials,
    )
    from botocore.utils import FileWebIdentityTokenLoader

    core = botocore.session.get_session()
    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=functools.partial(
            core.create_client, endpoint_url=location.endpoint, region_name=location.region or "us-east-1"
        ),
        web_identity_token_loader=FileWebIdentityTokenLoader(identity.token_file),
        role_arn=identity.role_arn,
    )

    class FileWebIdentity(CredentialProvider):  # type: ignore[misc]  # botocore is untyped
        METHOD = "assume-role-with-web-identity"
        CANONICAL_NAME = "pgwarden-web-identity"

        def load(self) -> Any:
            return DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method=self.METHOD)

    core.get_component("credential_provider").insert_before("env", FileWebIdentity())
    return boto3.session.Session(botocore_session=core)


def s3_client(location: S3Location, identity: WebIdentityFile | None = None) -> Any:
    """A boto3 S3 client for the location; credentials come from boto3's usual chain (env, files, IRSA,
    AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), or from the given role and token file."""
    import boto3

    session = _web_identity_session(location, identity) if identity else boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=location.endpoint,
        region_name=location.region or "us-east-1",
        config=client_config(addressing_style=location.addressing_style),
    )


def open_storage(location: Location | str) -> Storage:
    """The storage rooted at a location (parsed from a string if needed)."""
    if isinstance(location, str):
        location = parse_location(location)
    if isinstance(location, S3Location):
        return S3Storage(s3_client(location), location.bucket, location.prefix)
    return FilesystemStorage(location.path)
