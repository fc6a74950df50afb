"""Locations as users write them: s3://bucket/prefix (endpoint from the environment) or a path."""

from pathlib import Path

import pytest

from pgwarden.storage import InvalidLocation, parse_location
from pgwarden.storage.location import FilesystemLocation, S3Location


def test_s3_location_takes_bucket_prefix_and_endpoint_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("PGWARDEN_S3_FORCE_PATH_STYLE", raising=False)
    location = parse_location("s3://my-bucket/a/b/")
    assert isinstance(location, S3Location)
    assert location == S3Location(
        bucket="my-bucket", prefix="a/b", endpoint="http://127.0.0.1:9000", region=location.region
    )
    assert location.addressing_style == "path"


def test_aws_itself_gets_automatic_addressing_unless_path_style_is_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "PGWARDEN_S3_FORCE_PATH_STYLE"):
        monkeypatch.delenv(name, raising=False)
    location = parse_location("s3://bucket")
    assert isinstance(location, S3Location)
    assert location.addressing_style == "auto"
    monkeypatch.setenv("PGWARDEN_S3_FORCE_PATH_STYLE", "true")
    forced = parse_location("s3://bucket")
    assert isinstance(forced, S3Location)
    assert forced.addressing_style == "path"


def test_paths_and_file_uris_are_filesystem_locations(tmp_path: Path) -> None:
    assert parse_location(str(tmp_path)) == FilesystemLocation(tmp_path)
    assert parse_location(f"file://{tmp_path}") == FilesystemLocation(tmp_path)


@pytest.mark.parametrize("uri", ["", "s3://", "s3://A_Bad_Bucket/x", "gs://bucket/x", "https://host/x"])
def test_unusable_locations_are_refused_with_the_expected_form(uri: str) -> None:
    with pytest.raises(InvalidLocation, match="s3://bucket/prefix"):
        parse_location(uri)
