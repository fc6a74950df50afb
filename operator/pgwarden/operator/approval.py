"""Manual approval of a DatabaseMigration: what is shown for approval, and whether the annotation approves it.

An approval names one generation (`pgwarden.io/approved=<generation>`). Inline files are part of the spec,
so any edit to them is a new generation that waits for its own approval, and the Job of the approved
generation runs exactly the files (and checksums) status showed. Pure: nothing here calls the API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import ApprovalFile, ApprovalStatus, DatabaseMigration


@dataclass(frozen=True)
class Verdict:
    """Whether the resource's annotation approves its current generation; if not, what to do."""

    approved: bool
    message: str = ""


def command(migration: DatabaseMigration) -> str:
    """The exact command that approves the current generation."""
    meta = migration.metadata
    return (
        f"kubectl annotate dbmig {meta.name} -n {meta.namespace} "
        f"{APPROVED_ANNOTATION}={meta.generation or 1} --overwrite"
    )


def verdict(migration: DatabaseMigration) -> Verdict:
    generation = migration.metadata.generation or 1
    value = migration.metadata.annotations.get(APPROVED_ANNOTATION)
    review = f"review status.approval (the files and their checksums), then: {command(migration)}"
    if value is None:
        return Verdict(False, f"waiting for approval of generation {generation}: {review}")
    if value.strip() == str(generation):
        return Verdict(True)
    if value.strip().isdigit():
        reason = (
            f"{APPROVED_ANNOTATION}={value} approved generation {value.strip()}, "
            f"but the resource changed since: generation {generation} needs its own approval"
        )
    else:
        reason = (
            f"{APPROVED_ANNOTATION}={value} approves nothing: an approval names the generation it approves"
        )
    return Verdict(False, f"{reason}; {review}")


def shown(migration: DatabaseMigration, *, approved: bool) -> ApprovalStatus:
    """`status.approval`: the generation, where its files come from, and the inline files' checksums."""
    source = migration.spec.migrations
    files: list[ApprovalFile] = []
    if source.inline is not None:
        where = "inline"
        files = [
            ApprovalFile(name=item.name, sha256=hashlib.sha256(item.sql.encode()).hexdigest())
            for item in source.inline
        ]
    elif source.image is not None:
        where = f"image {source.image.image}, {source.image.path} (name it by digest to approve its content)"
    else:
        names = ", ".join(ref.name for ref in source.config_map_refs or [])
        where = f"ConfigMap {names} (read by the Job when it starts)"
    return ApprovalStatus(
        generation=migration.metadata.generation or 1, approved=approved, source=where, files=files
    )
