"""Whose backup is it: the owner a manifest records, backups grouped by owner, and which one `latest` means.

A backup belongs to the resource that made it (`DatabaseBackup/<namespace>/<name>`, or the label given to
`pgwarden backup --owner`), else to the database it holds (`host:port/dbname`). Retention, `latest` and
listings act on one owner's backups, so two databases sharing a prefix never prune or restore each other's.
Manifests written before owners were recorded name their database as `user@host:port/dbname`; their owner
is derived from it and marked as not recorded. Pure decisions over manifests: no storage calls here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pgwarden.storage.base import ObjectNotFound

UNKNOWN_OWNER = "unknown"
# describe()'s `user@host:port/dbname`; the user may itself hold '@' (Azure's user@server), a socket host '/'.
_LEGACY_DATABASE = re.compile(r"^(?:.*@)?(?P<host>[^@]*):(?P<port>[^:/@]*)/(?P<dbname>[^/]*)$")


class OwnedManifest(Protocol):
    """What ownership reads from a manifest."""

    @property
    def id(self) -> str: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def database(self) -> str: ...

    @property
    def database_name(self) -> str | None: ...

    @property
    def database_server(self) -> str | None: ...


M = TypeVar("M", bound=OwnedManifest)


@dataclass(frozen=True)
class Owner:
    """Who a backup belongs to, as one label; `recorded` is False for manifests from before owners."""

    label: str
    recorded: bool = True


def database_label(server: str, dbname: str) -> str:
    """The owner label of a backup made without an owning resource: its database, `host:port/dbname`."""
    return f"{server}/{dbname}"


def owner_of(manifest: OwnedManifest) -> Owner:
    """The owning resource when one is recorded, else the database (recorded, or derived from an old manifest)."""
    if manifest.owner:
        return Owner(manifest.owner)
    if manifest.database_name is not None and manifest.database_server is not None:
        return Owner(database_label(manifest.database_server, manifest.database_name))
    match = _LEGACY_DATABASE.match(manifest.database or "")
    if not match:
        return Owner(UNKNOWN_OWNER, recorded=False)
    return Owner(
        database_label(f"{match['host']}:{match['port']}", match["dbname"]),
        recorded=False,
    )


def group_by_owner(manifests: Iterable[M]) -> dict[str, list[M]]:
    """Manifests by owner label, each group in the order given (newest first from a catalog)."""
    groups: dict[str, list[M]] = {}
    for manifest in manifests:
        groups.setdefault(owner_of(manifest).label, []).append(manifest)
    return groups


def describe_owners(groups: Mapping[str, Sequence[OwnedManifest]]) -> str:
    """`a (2 backups, newest X), b (1 backup, newest Y)`, for messages that ask the user to pick one."""
    parts = []
    for label in sorted(groups):
        items = groups[label]
        count = f"{len(items)} backup{'s' if len(items) != 1 else ''}"
        parts.append(f"{label} ({count}, newest {items[0].id})")
    return ", ".join(parts)


class OwnerNotChosen(ObjectNotFound):
    """The location holds several owners' backups and none was named, so no single one is 'the latest'."""

    def __init__(self, location: str, groups: Mapping[str, Sequence[OwnedManifest]], advice: str) -> None:
        self.owners = sorted(groups)
        super().__init__(
            f"{location} holds the backups of {len(groups)} owners: {describe_owners(groups)}; {advice}"
        )


class NotTheOwners(ObjectNotFound):
    """A backup was named that belongs to another owner than the one asked for."""


def check_owner(manifest: OwnedManifest, owner: str | None, location: str) -> None:
    """Refuse a backup whose recorded owner is not `owner`; an old manifest (owner not recorded) passes,
    since it was named explicitly and nothing says whose it is."""
    found = owner_of(manifest)
    if owner is not None and found.recorded and found.label != owner:
        raise NotTheOwners(
            f"backup {manifest.id} at {location} belongs to {found.label}, not {owner}; "
            "name a backup of that owner, or leave the owner out"
        )


def choose_latest(manifests: list[M], owner: str | None, location: str, *, advice: str) -> M:
    """The newest backup of `owner`, or of the only owner there when none is named (manifests newest first).

    Raises OwnerNotChosen when several owners' backups are there and none was named, ObjectNotFound when
    there is no backup of that owner."""
    groups = group_by_owner(manifests)
    if owner is not None:
        if owner in groups:
            return groups[owner][0]
        others = f"; owners there: {describe_owners(groups)}" if groups else ""
        raise ObjectNotFound(f"no complete backup of {owner} at {location}{others}")
    if len(groups) > 1:
        raise OwnerNotChosen(location, groups, advice)
    if not manifests:
        raise ObjectNotFound(f"no complete backup at {location} (no manifest.json there or below)")
    return manifests[0]
