"""Both backends behave alike: streaming put and get, atomic commit, abort leaves nothing, list, delete."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pgwarden_testing import s3server

from pgwarden.storage import ObjectNotFound, Storage
from pgwarden.storage.location import S3Location, s3_client
from pgwarden.storage.manifest import prune, scan
from pgwarden.storage.retention import RetentionPolicy
from pgwarden.storage.s3 import MiB, S3Storage


def put_stream(storage: Storage, key: str, chunks: list[bytes], *, size_hint: int | None = None) -> None:
    writer = storage.open_writer(key, size_hint=size_hint)
    for chunk in chunks:
        writer.write(chunk)
    writer.commit()


def test_a_streamed_object_reads_back_identically_across_several_parts(storage: Storage) -> None:
    chunks = [os.urandom(3 * MiB) for _ in range(7)]  # 21 MiB: two 16 MiB parts on S3
    put_stream(storage, "a/b/dump.bin", chunks)
    digest = hashlib.sha256()
    with storage.open_reader("a/b/dump.bin") as reader:
        while block := reader.read(MiB):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert [(o.key, o.size) for o in storage.list_objects()] == [("a/b/dump.bin", 21 * MiB)]


def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(storage: Storage) -> None:
    writer = storage.open_writer("x/dump.bin")
    writer.write(os.urandom(17 * MiB))
    assert not storage.exists("x/dump.bin")
    assert storage.list_objects() == []
    writer.abort()
    assert storage.list_objects() == []
    assert storage.list_pending() == []


def test_an_unfinished_write_is_pending_until_discarded(storage: Storage) -> None:
    writer = storage.open_writer("20260101T000000Z-abcdef/dump.pgc")
    writer.write(os.urandom(17 * MiB))  # on S3 this starts the multipart upload
    pending = storage.list_pending()
    assert [p.key.split("/")[0] for p in pending] == ["20260101T000000Z-abcdef"]
    assert storage.list_objects() == []
    for item in pending:
        storage.discard_pending(item)
    assert storage.list_pending() == []


def test_small_objects_and_deletion(storage: Storage) -> None:
    storage.put_bytes("k/manifest.json", b"{}")
    assert storage.get_bytes("k/manifest.json") == b"{}"
    assert storage.exists("k/manifest.json")
    storage.delete(["k/manifest.json", "k/never-existed"])
    assert not storage.exists("k/manifest.json")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("k/manifest.json")


def test_storage_is_writable_and_child_storages_nest(storage: Storage) -> None:
    storage.check_writable()
    child = storage.child("one/two")
    child.put_bytes("f", b"x")
    assert storage.get_bytes("one/two/f") == b"x"
    assert child.uri("f") == storage.uri("one/two/f")


def test_debris_of_a_killed_write_is_found_and_pruned_after_the_grace_period(storage: Storage) -> None:
    writer = storage.open_writer("20260101T000000Z-abcdef/dump.pgc")
    writer.write(os.urandom(17 * MiB))
    storage.put_bytes("unrelated/file.txt", b"not ours")
    catalog = scan(storage)
    assert catalog.backups == []
    assert [d.name for d in catalog.debris] == ["20260101T000000Z-abcdef"]
    now = datetime.now(UTC)
    kept = prune(storage, RetentionPolicy(keep_last=1), now)
    assert kept.debris_removed == []
    removed = prune(storage, RetentionPolicy(keep_last=1), now + timedelta(days=2))
    assert removed.debris_removed == ["20260101T000000Z-abcdef"]
    assert storage.list_pending() == []
    assert [o.key for o in storage.list_objects()] == ["unrelated/file.txt"]


class Interrupted(Exception):
    """What a signal handler raises in the main thread (pgwarden's SIGTERM ends the run by an exception)."""


class InterruptedAfterCreate:
    """The real S3 client, whose create_multipart_upload is interrupted right after MinIO created the upload and
    before its id reached the caller: the moment a SIGTERM arrives while the response is being read."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def create_multipart_upload(self, **kwargs: Any) -> Any:
        self._client.create_multipart_upload(**kwargs)
        raise Interrupted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.s3
def test_an_upload_interrupted_while_it_is_being_created_is_aborted_too(s3: s3server.S3Server) -> None:
    """CI found a SIGTERM'd backup that left a pending upload: the upload existed on the server, its id not yet
    in the writer, so `abort` had nothing to abort."""
    bucket = s3.create_bucket()
    location = S3Location(bucket=bucket, prefix="backups", endpoint=s3.endpoint, region="us-east-1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        patch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        client = s3_client(location)
    storage = S3Storage(InterruptedAfterCreate(client), bucket, "backups")
    writer = storage.open_writer("20260101T000000Z-abcdef/dump.pgc.gz")
    with pytest.raises(Interrupted):
        writer.write(os.urandom(17 * MiB))  # the first part fills: the upload is created
    writer.abort()
    assert storage.list_pending() == []
