"""Manual approval of a DatabaseMigration: what is shown for approval, and whether the annotation approves it.

An approval names one generation (`pgwarden.io/approved=<generation>`). Inline files are part of the spec,
so any edit to them is a new generation that waits for its own approval, and the Job of the approved
generation runs exactly the files (and checksums) status showed.

Files in ConfigMaps are not part of the spec: the operator reads them, shows their checksums, and the Job
of an approved generation carries the very content approved (in its task), never the ConfigMap as it is when
the pod starts. Their content is not part of the spec, so the generation alone cannot name it: the approval
names the files too (`<generation>-<digest>`, the digest of the checksums status shows), and a ConfigMap edited
after that runs nothing until its new files are approved. Pure: nothing here calls the API.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.migration import (
    MIGRATION_FILE_PATTERN,
    ApprovalFile,
    ApprovalStatus,
    DatabaseMigration,
    InlineMigration,
)
from pgwarden.api.sets import SET_LABEL

Obj = dict[str, Any]
DIGEST_LENGTH = 12


@dataclass(frozen=True)
class ConfigMapFiles:
    """The migration files of a migration's ConfigMaps as the operator read them, or which are missing."""

    files: tuple[InlineMigration, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """Whether the resource's annotation approves its current generation; if not, what to do."""

    approved: bool
    message: str = ""


def read_config_maps(names: Sequence[str], found: Mapping[str, Obj | None]) -> ConfigMapFiles:
    """The files (data keys named like migrations, non-empty) of the ConfigMaps `names`, as `found` holds them."""
    missing = tuple(name for name in names if found.get(name) is None)
    files: dict[str, str] = {}
    for name in names:
        for key, text in ((found.get(name) or {}).get("data") or {}).items():
            if re.fullmatch(MIGRATION_FILE_PATTERN, key) and str(text).strip():
                files[key] = str(text)
    return ConfigMapFiles(
        files=tuple(InlineMigration(name=key, sql=files[key]) for key in sorted(files)), missing=missing
    )


def checksums(files: Sequence[InlineMigration]) -> list[ApprovalFile]:
    return [
        ApprovalFile(name=item.name, sha256=hashlib.sha256(item.sql.encode()).hexdigest()) for item in files
    ]


def digest(files: Sequence[ApprovalFile]) -> str:
    """A short name for one set of files and contents, for an approval that must name them."""
    lines = "".join(f"{item.name} {item.sha256}\n" for item in files)
    return hashlib.sha256(lines.encode()).hexdigest()[:DIGEST_LENGTH]


def command(migration: DatabaseMigration, files: Sequence[ApprovalFile] | None = None) -> str:
    """The exact command that approves the current generation (and, given, exactly these files)."""
    meta = migration.metadata
    value = f"{meta.generation or 1}" + (f"-{digest(files)}" if files is not None else "")
    return f"kubectl annotate dbmig {meta.name} -n {meta.namespace} {APPROVED_ANNOTATION}={value} --overwrite"


def verdict(migration: DatabaseMigration, current: ConfigMapFiles | None = None) -> Verdict:
    """Whether the annotation approves this generation and, for ConfigMaps, exactly the files they hold now
    (`current`): their content is not part of the spec, so the approval names it by its digest."""
    generation = migration.metadata.generation or 1
    value = (migration.metadata.annotations.get(APPROVED_ANNOTATION) or "").strip()
    files = checksums(current.files) if current is not None else None
    approve = command(migration, files)
    review = f"review status.approval (the files and their checksums), then: {approve}"
    if current is not None and current.missing:
        return Verdict(False, f"ConfigMap {', '.join(current.missing)} not found; create it, then approve")
    if value == (f"{generation}-{digest(files)}" if files is not None else str(generation)):
        return Verdict(True)
    owner = migration.metadata.labels.get(SET_LABEL)
    if owner:  # a set's child: the set approves it when its rollout reaches it
        return Verdict(
            False,
            f"waiting for its turn in DatabaseMigrationSet {owner}, which starts it when its rollout reaches it "
            "(approve the set, not this resource)",
        )
    if not value:
        return Verdict(False, f"waiting for approval of generation {generation}: {review}")
    number, _, named = value.partition("-")
    if files is not None and number == str(generation):
        reason = (
            f"{APPROVED_ANNOTATION}={value} approved other files than its ConfigMap holds now (changed since)"
            if named
            else f"{APPROVED_ANNOTATION}={value} names the generation but not the files its ConfigMap holds"
        )
        return Verdict(False, f"{reason}, so nothing runs; {review}")
    if number.isdigit():
        reason = (
            f"{APPROVED_ANNOTATION}={value} approved generation {number}, "
            f"but the resource changed since: generation {generation} needs its own approval"
        )
    else:
        reason = (
            f"{APPROVED_ANNOTATION}={value} approves nothing: an approval names the generation it approves"
        )
    return Verdict(False, f"{reason}; {review}")


def shown(
    migration: DatabaseMigration, *, approved: bool, current: ConfigMapFiles | None = None
) -> ApprovalStatus:
    """`status.approval`: the generation, where its files come from, and the files' checksums (inline, or
    what the ConfigMaps held when the operator read them)."""
    source = migration.spec.migrations
    files: list[ApprovalFile] = []
    if source.inline is not None:
        where = "inline"
        files = checksums(source.inline)
    elif source.image is not None:
        where = f"image {source.image.image}, {source.image.path} (name it by digest to approve its content)"
    else:
        names = ", ".join(ref.name for ref in source.config_map_refs or [])
        files = checksums(current.files) if current is not None else []
        where = f"ConfigMap {names} (the Job runs the files below as approved, whatever the ConfigMap holds later)"
    status = ApprovalStatus(
        generation=migration.metadata.generation or 1, approved=approved, source=where, files=files
    )
    if source.config_map_refs:
        status.digest = digest(files)
    return status
