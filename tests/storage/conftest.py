"""Storage fixtures: a real MinIO on 127.0.0.1 per test session, and each backend in turn."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgwarden_testing import s3server

from pgwarden.storage import Storage
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.location import S3Location, s3_client
from pgwarden.storage.s3 import S3Storage


def s3_storage(server: s3server.S3Server, prefix: str = "backups") -> S3Storage:
    bucket = server.create_bucket()
    location = S3Location(bucket=bucket, prefix=prefix, endpoint=server.endpoint, region="us-east-1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        patch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        client = s3_client(location)
    return S3Storage(client, bucket, prefix)


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An empty storage prefix on each backend in turn."""
    if request.param == "filesystem":
        return FilesystemStorage(tmp_path / "backups")
    return s3_storage(request.getfixturevalue("s3"))
