"""Further copies of a backup: where each went and whether it was verified there."""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.retention import RetentionOutcome


class BackupCopy(ApiModel):
    """One copy of a backup in a further storage, checked there by checksum after it was written."""

    location: str = Field(description="The copy's backup folder: s3://bucket/prefix/id or a path.")
    sha256: str | None = Field(default=None, description="SHA-256 of the dump, as its manifest records it.")
    verified: bool = Field(description="Every copied object was read back there and matched its checksum.")
    server_side: bool | None = Field(
        default=None, description="Copied inside the S3 service (no bytes through pgwarden)."
    )
    size_bytes: int | None = Field(default=None, description="Bytes stored at the copy.")
    duration_seconds: float | None = None
    error: str | None = Field(default=None, description="Why the copy failed; nothing is listed there then.")
    retained: int | None = Field(
        default=None, description="Set by a backup Job: the owner's copies kept there after its retention."
    )
    retention: RetentionOutcome | None = Field(
        default=None, description="Set by a backup Job: what its retention there decided, backup by backup."
    )
