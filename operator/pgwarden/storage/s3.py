"""Backups in S3 and S3-compatible servers (MinIO and friends) through boto3, streamed as multipart uploads."""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
from datetime import datetime
from typing import Any, BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from pgwarden.storage.base import (
    ObjectNotFound,
    PendingWrite,
    StorageError,
    StoredObject,
    join_key,
)
from pgwarden.threads import start_helper

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
# Two parts are in memory (one filling, one uploading): S3's minimum keeps a backup's memory small whatever
# the database's size (up to ~8 GB a database is planned with these; beyond, parts grow with it).
DEFAULT_PART_SIZE = MIN_PART_SIZE
# A dump can be larger than the database's on-disk size (bytea as hex text, compression 'none'): plan for 3x.
SIZE_SAFETY_FACTOR = 3
PLANNED_PARTS = 5_000
# Past the planned parts, each further 1,000 parts double in size, so an estimate that was far too low
# still fits: with the planned size P, the 10,000 parts hold 5,000 P + 62,000 P, ~13x the planned total.
GROWTH_EVERY = 1_000


def plan_part_size(estimated_bytes: int | None) -> int:
    """The first part size for a dump of a database of about `estimated_bytes` (whole MiB, >= 5 MiB)."""
    if not estimated_bytes or estimated_bytes <= 0:
        return DEFAULT_PART_SIZE
    needed = -(-estimated_bytes * SIZE_SAFETY_FACTOR // PLANNED_PARTS)
    size = max(DEFAULT_PART_SIZE, -(-needed // MiB) * MiB)
    return min(size, MAX_PART_SIZE)


def part_size_for(part_number: int, planned: int) -> int:
    """The size of part `part_number` (1-based): the planned size, doubling every 1,000 parts past 5,000."""
    doublings = (part_number - PLANNED_PARTS - 1) // GROWTH_EVERY + 1 if part_number > PLANNED_PARTS else 0
    return min(max(planned, MIN_PART_SIZE) << doublings, MAX_PART_SIZE)


def capacity(planned: int) -> int:
    """How many bytes 10,000 parts hold when the first part size is `planned`."""
    return sum(part_size_for(n, planned) for n in range(1, MAX_PARTS + 1))


def client_config(*, addressing_style: str = "auto") -> Any:
    """boto3 settings that S3-compatible servers accept.

    Since boto3 1.36 every request carries a CRC checksum and every response is validated, which several
    S3-compatible servers reject or cannot answer: checksums only when an operation requires one.
    """
    from botocore.config import Config

    return Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=8,
    )


# What boto3 raises: the service's answer (ClientError) or the client's own failure (connection, parameters).
S3_FAILED = (ClientError, BotoCoreError)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{code}: {message}".strip(": ") or type(exc).__name__
    return str(exc) or type(exc).__name__


class MultipartWriter:
    """A streaming put as a multipart upload: parts are uploaded by one background thread while the next
    fills, so memory stays at two parts; `abort` aborts the upload so nothing is left behind."""

    def __init__(self, client: Any, bucket: str, key: str, planned_part_size: int) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._planned = planned_part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._part_number = 1
        self._upload_id: str | None = None
        self._queue: queue.Queue[tuple[int, bytes | bytearray] | None] = queue.Queue(maxsize=1)
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._starting = False

    @property
    def _uri(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    def _start(self) -> None:
        self._starting = True  # until its id is ours, an abort must look the upload up by key
        try:
            created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
        except S3_FAILED as exc:
            raise StorageError(f"cannot start upload to {self._uri}: {_describe(exc)}") from exc
        self._upload_id = created["UploadId"]
        self._starting = False
        self._thread = threading.Thread(target=self._upload_parts, name="s3-upload", daemon=True)
        start_helper(self._thread)

    def _upload_parts(self) -> None:
        while (item := self._queue.get()) is not None:
            number, body = item
            try:
                if self._failure is None:
                    response = self._client.upload_part(
                        Bucket=self._bucket,
                        Key=self._key,
                        UploadId=self._upload_id,
                        PartNumber=number,
                        Body=body,
                    )
                    self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
            except BaseException as exc:  # handed to the writing thread, which raises it as a StorageError
                self._failure = exc
            finally:
                del item, body
                self._queue.task_done()
        self._queue.task_done()

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise StorageError(f"upload to {self._uri} failed: {_describe(self._failure)}") from self._failure

    def _send_part(self, body: bytes | bytearray) -> None:
        if self._part_number > MAX_PARTS:
            raise StorageError(f"upload to {self._uri} needs more than {MAX_PARTS} parts")
        if self._upload_id is None:
            self._start()
        # Hand over a part only once the previous one is uploaded: one part fills while one uploads, and
        # never more than two are in memory.
        self._queue.join()
        self._check_failure()
        self._queue.put((self._part_number, body))
        self._part_number += 1

    def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError(f"write to {self._uri} after it was closed")
        view = memoryview(data)
        while view:
            size = part_size_for(self._part_number, self._planned)
            taken = view[: size - len(self._buffer)]
            self._buffer += taken
            view = view[len(taken) :]
            if len(self._buffer) >= size:
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)  # the filled buffer itself, not a copy of it

    def _drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def commit(self) -> None:
        if self._closed:
            raise StorageError(f"commit of {self._uri} after it was closed")
        try:
            if self._upload_id is None:
                # Smaller than one part: a single PUT is atomic too.
                self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._buffer)
                self._closed = True
                return
            if self._buffer:  # a multipart upload has sent a part already; this is the last one
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)
            self._drain()
            self._check_failure()
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
            )
            self._closed = True
        except StorageError:
            self.abort()
            raise
        except S3_FAILED as exc:
            self.abort()
            raise StorageError(f"upload to {self._uri} failed: {_describe(exc)}") from exc

    def abort(self) -> None:
        self._closed = True
        self._buffer.clear()
        if self._thread is not None:
            self._failure = self._failure or StorageError("aborted")
            self._drain()
        uploads = [self._upload_id] if self._upload_id is not None else []
        if self._starting:  # interrupted (a signal) after the server made the upload, before we had its id
            uploads = self._uploads_of_key()
        for upload_id in uploads:
            with contextlib.suppress(*S3_FAILED):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
        self._upload_id, self._starting = None, False

    def _uploads_of_key(self) -> list[str]:
        """The ids of the uploads in progress to exactly this writer's key (each backup's keys are its own)."""
        try:
            listed = self._client.list_multipart_uploads(Bucket=self._bucket, Prefix=self._key)
        except S3_FAILED:
            return []
        return [u["UploadId"] for u in listed.get("Uploads", []) if u.get("Key") == self._key]


class S3Storage:
    """Storage under `s3://bucket/prefix`."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = join_key(prefix)

    @property
    def location(self) -> str:
        return self.uri()

    def child(self, key: str) -> S3Storage:
        return S3Storage(self._client, self.bucket, self._full(key))

    def uri(self, key: str = "") -> str:
        full = self._full(key)
        return f"s3://{self.bucket}/{full}" if full else f"s3://{self.bucket}"

    def _full(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _list_prefix(self, prefix: str) -> str:
        full = self._full(prefix)
        return f"{full}/" if full else ""

    def open_writer(self, key: str, *, size_hint: int | None = None) -> MultipartWriter:
        return MultipartWriter(self._client, self.bucket, self._full(key), plan_part_size(size_hint))

    def open_reader(self, key: str) -> BinaryIO:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        except S3_FAILED as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"{self.uri(key)} does not exist") from exc
            raise StorageError(f"cannot read {self.uri(key)}: {_describe(exc)}") from exc
        return cast(BinaryIO, response["Body"])

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        except S3_FAILED as exc:
            raise StorageError(f"cannot write {self.uri(key)}: {_describe(exc)}") from exc

    def get_bytes(self, key: str) -> bytes:
        body = self.open_reader(key)
        try:
            return body.read()
        finally:
            body.close()

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        found = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._list_prefix(prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        StoredObject(self._relative(item["Key"]), item["Size"], item["LastModified"])
                    )
        except S3_FAILED as exc:
            raise StorageError(f"cannot list {self.uri(prefix)}: {_describe(exc)}") from exc
        return sorted(found, key=lambda obj: obj.key)

    def list_pending(self, prefix: str = "") -> list[PendingWrite]:
        # MinIO lists uploads only for an exact key or the whole bucket, never for a folder-like prefix:
        # ask for the exact key, then the whole bucket, and keep what lies under ours.
        full = self._full(prefix)
        under = self._list_prefix(prefix)
        pending: dict[str, PendingWrite] = {}
        try:
            for query in dict.fromkeys([full, ""]):
                pages = self._client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=query
                )
                for page in pages:
                    for upload in page.get("Uploads", []):
                        key = upload["Key"]
                        if upload["UploadId"] in pending or not (key == full or key.startswith(under)):
                            continue
                        pending[upload["UploadId"]] = PendingWrite(
                            self._relative(key), self._last_activity(upload), upload["UploadId"]
                        )
        except S3_FAILED as exc:
            raise StorageError(f"cannot list uploads under {self.uri(prefix)}: {_describe(exc)}") from exc
        return sorted(pending.values(), key=lambda p: p.key)

    def _last_activity(self, upload: dict[str, Any]) -> datetime:
        """An upload still receiving parts is alive: its age is that of its newest part."""
        last: datetime = upload["Initiated"]
        parts = self._client.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for part in parts.get("Parts", []):
            last = max(last, part["LastModified"])
        return last

    def discard_pending(self, pending: PendingWrite) -> None:
        try:
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._full(pending.key), UploadId=pending.upload_id
            )
        except S3_FAILED as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise StorageError(f"cannot abort upload {self.uri(pending.key)}: {_describe(exc)}") from exc

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._full(key)} for key in keys[start : start + 1000]]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except S3_FAILED as exc:
                raise StorageError(f"cannot delete under {self.uri()}: {_describe(exc)}") from exc
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageError(f"cannot delete s3://{self.bucket}/{first['Key']}: {first.get('Message')}")

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except S3_FAILED as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot read {self.uri(key)}: {_describe(exc)}") from exc
        return True

    def same_service(self, other: object) -> bool:
        """Whether `other` is S3 storage on the same endpoint, so an object may be copied from it server-side
        (no bytes through us); the caller falls back to streaming when the service refuses."""
        if not isinstance(other, S3Storage):
            return False
        return bool(self._client.meta.endpoint_url == other._client.meta.endpoint_url)

    def copy_within(self, source: S3Storage, source_key: str, key: str, size: int) -> None:
        """Copy an object of `source` (same service) to `key` here, server-side; a multipart copy past 5 GiB.
        Nothing is left at `key` when it fails."""
        copy_source = {"Bucket": source.bucket, "Key": source._full(key=source_key)}
        target = self._full(key)
        try:
            if size <= MAX_PART_SIZE:
                self._client.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source)
                return
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
            try:
                parts, start, number = [], 0, 1
                part = max(plan_part_size(size), 512 * MiB)
                while start < size:
                    end = min(start + part, size) - 1
                    done = self._client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=target,
                        UploadId=upload,
                        PartNumber=number,
                        CopySource=copy_source,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    parts.append({"PartNumber": number, "ETag": done["CopyPartResult"]["ETag"]})
                    start, number = end + 1, number + 1
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload, MultipartUpload={"Parts": parts}
                )
            except BaseException:  # whatever stopped the copy (SIGTERM too): leave no upload behind, re-raise
                with contextlib.suppress(*S3_FAILED):
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload)
                raise
        except S3_FAILED as exc:
            raise StorageError(
                f"cannot copy {source.uri(source_key)} to {self.uri(key)}: {_describe(exc)}"
            ) from exc

    def check_writable(self) -> None:
        key = f".pgwarden-probe-{secrets.token_hex(6)}"
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=b"probe")
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except S3_FAILED as exc:
            if _error_code(exc) == "NoSuchBucket":
                raise StorageError(f"bucket {self.bucket!r} does not exist; create it first") from exc
            raise StorageError(f"cannot write to {self.uri()}: {_describe(exc)}") from exc
