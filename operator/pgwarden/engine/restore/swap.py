"""The restore rollback's swap by rename, with the database names as its durable state.

A restore rollback restores its backup into `<db>_pgw_restore_<token>`. Once that copy matches the backup's
manifest it is renamed `<db>_pgw_verified_<stamp>`: the name itself says the copy may be swapped in. The swap
closes `<db>` to connections, ends its sessions, renames it `<db>_pgw_failed_<stamp>` (kept for inspection),
renames the verified copy `<db>` and opens the failed one again. Names live in the server's shared catalog,
so whatever dies part-way, the next run reads from the maintenance database which step was reached, even
when no database is called `<db>` at all, and finishes the swap (`settle_swaps`).

While the run that owns a swap lives it holds an advisory lock named for its verified copy (`swap_key`), in
the maintenance database; settling touches only swaps whose owner is gone, so it never races a live run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgwarden.engine.pause_points import pause_point
from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.databases import derived_name
from pgwarden.engine.postgres.schema_diff import quote_ident
from pgwarden.engine.postgres.scratch import scratch_key
from pgwarden.errors import PgwardenError

Connection = psycopg.Connection[Any]
Say = Callable[[str], None]

RESTORE_MARK = "_pgw_restore_"
VERIFIED_MARK = "_pgw_verified_"
FAILED_MARK = "_pgw_failed_"
_STAMP = re.compile(r"\d{8}_\d{6}(?:_\d+)?")


class SwapBlocked(PgwardenError):
    """Sessions the role may not end stay on the database, so it cannot be renamed."""


@dataclass(frozen=True)
class Names:
    """The database, the copy the backup is restored into, that copy once verified, and the failed run's
    database once swapped out (the last two share their stamp)."""

    database: str
    scratch: str
    verified: str
    failed: str


def names_for(
    database: str, now: datetime, token: str, taken: Callable[[str], bool] = lambda _name: False
) -> Names:
    """At most 63 bytes each, so PostgreSQL never truncates them, and a stamp no database uses yet (pure but
    for `taken`)."""
    base, attempt = f"{now:%Y%m%d_%H%M%S}", 1
    stamp = base
    while taken(derived_name(database, FAILED_MARK + stamp)) or taken(
        derived_name(database, VERIFIED_MARK + stamp)
    ):
        attempt += 1
        stamp = f"{base}_{attempt}"
    return Names(
        database,
        derived_name(database, RESTORE_MARK + token),
        derived_name(database, VERIFIED_MARK + stamp),
        derived_name(database, FAILED_MARK + stamp),
    )


def swap_key(names: Names) -> int:
    """The lock the swap's owner holds in the maintenance database from the verified copy on."""
    return scratch_key(names.verified)


@contextmanager
def owning(conn: Connection, names: Names) -> Iterator[None]:
    """Hold the swap's lock for the block (SwapBlocked when another live run owns these names)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [swap_key(names)]).fetchone()
    if not (row and row[0]):
        raise SwapBlocked(f"another live run owns the swap into {names.database}")
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", [swap_key(names)])


def mark_verified(conn: Connection, names: Names) -> None:
    """The restored copy matched its backup: give it the name that says it may be swapped in."""
    databases.rename(conn, names.scratch, names.verified)
    pause_point("rollback-verified")


def swap_in(conn: Connection, names: Names, role: str) -> None:
    """Close the database, end its sessions, rename it away and the verified copy in, open the failed one
    again. SwapBlocked (nothing renamed yet) when a session the role may not end stays."""
    databases.allow_connections(conn, names.database, False)
    pause_point("swap-closed")
    blocking = databases.end_sessions(conn, names.database)
    if blocking:
        grant = f"GRANT pg_signal_backend TO {quote_ident(role)}"
        raise SwapBlocked(
            f"sessions on {names.database} that {quote_ident(role)} may not end stay: "
            f"{', '.join(blocking)} ({grant}, or end them and restore the backup by hand)"
        )
    databases.rename(conn, names.database, names.failed)
    pause_point("rollback-renamed-away")
    databases.rename(conn, names.verified, names.database)
    pause_point("swap-renamed-in")
    databases.allow_connections(conn, names.failed, True)


# --- what a dead swap left, and settling it -------------------------------------------------------------


@dataclass(frozen=True)
class LeftSwap:
    """A swap of `database` whose owner may be gone: its verified copy and failed database, where they exist."""

    names: Names
    verified: bool
    failed: bool
    failed_open: bool


def _stamp_of(name: str, database: str, mark: str) -> str | None:
    """The stamp of `name` when it is `database`'s `mark` name (pure; exact, whatever the truncation)."""
    _head, found, stamp = name.rpartition(mark)
    if not found or not _STAMP.fullmatch(stamp) or derived_name(database, mark + stamp) != name:
        return None
    return stamp


def left_swaps(conn: Connection, database: str) -> list[LeftSwap]:
    """Every verified copy of `database`, and every failed database of it still closed to connections."""
    rows = conn.execute(
        "SELECT datname, datallowconn FROM pg_database WHERE strpos(datname, %s) > 0 OR strpos(datname, %s) > 0",
        [VERIFIED_MARK, FAILED_MARK],
    ).fetchall()
    verified: set[str] = set()
    failed: dict[str, bool] = {}
    for name, allowed in rows:
        if stamp := _stamp_of(str(name), database, VERIFIED_MARK):
            verified.add(stamp)
        elif stamp := _stamp_of(str(name), database, FAILED_MARK):
            failed[stamp] = bool(allowed)
    stamps = verified | {stamp for stamp, allowed in failed.items() if not allowed}
    return [
        LeftSwap(
            Names(
                database,
                "",
                derived_name(database, VERIFIED_MARK + stamp),
                derived_name(database, FAILED_MARK + stamp),
            ),
            verified=stamp in verified,
            failed=stamp in failed,
            failed_open=failed.get(stamp, False),
        )
        for stamp in sorted(stamps)
    ]


@dataclass(frozen=True)
class Settled:
    """What settling one left swap found and did, in words; `failed` when it could not finish it."""

    found: str
    done: str
    failed: bool = False


def settle_swaps(conn: Connection, database: str, role: str) -> list[Settled]:
    """Finish every swap of `database` whose owner is gone: a verified copy is swapped in (the rollback's
    intent), a failed database with no verified copy beside it goes back under its name when the name is
    free, and one left closed is opened again. `conn` is on the maintenance database."""
    settled = []
    for left in left_swaps(conn, database):
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [swap_key(left.names)]).fetchone()
        if not (row and row[0]):
            continue  # a live run's swap
        try:
            settled.append(_settle_one(conn, left, role))
        except (psycopg.Error, PgwardenError, LookupError) as exc:
            settled.append(
                Settled(
                    _found(left, databases.exists(conn, database)),
                    f"could not finish it: {_message(exc)}; {stranded(left.names)}",
                    failed=True,
                )
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [swap_key(left.names)])
    return settled


def _settle_one(conn: Connection, left: LeftSwap, role: str) -> Settled:
    names = left.names
    present = databases.exists(conn, names.database)
    found = _found(left, present)
    if left.verified and not present:
        databases.rename(conn, names.verified, names.database)
        if left.failed:
            databases.allow_connections(conn, names.failed, True)
        return Settled(found, f"completed the swap: {names.verified} is {names.database} now{_kept(left)}")
    if left.verified and not left.failed:
        swap_in(conn, names, role)
        return Settled(
            found, f"completed the swap: {names.verified} is {names.database} now{_kept(left, True)}"
        )
    if left.verified:
        return Settled(found, f"left it: {stranded(names)}", failed=True)
    if not present:
        databases.rename(conn, names.failed, names.database)
        databases.allow_connections(conn, names.database, True)
        return Settled(found, f"put the original back: {names.failed} is {names.database} again")
    databases.allow_connections(conn, names.failed, True)
    return Settled(found, f"opened {names.failed} to connections again")


def _found(left: LeftSwap, present: bool) -> str:
    names = left.names
    parts = [f"{names.database} {'exists' if present else 'does not exist'}"]
    if left.verified:
        parts.append(f"the verified restored copy {names.verified} is beside it")
    if left.failed:
        state = "open" if left.failed_open else "closed to connections"
        parts.append(f"the failed run's database {names.failed} is {state}")
    return "a restore rollback's swap died part-way: " + ", ".join(parts)


def _kept(left: LeftSwap, swapped_now: bool = False) -> str:
    if left.failed or swapped_now:
        return f"; the failed run's database is kept as {left.names.failed}"
    return ""


def stranded(names: Names) -> str:
    """What to run by hand when a swap cannot be finished (pure; every name quoted to paste back as SQL)."""
    q = quote_ident
    return (
        f"the failed run's database is {q(names.database)} or {q(names.failed)}, the verified restored copy "
        f"is {q(names.verified)} (if it still exists). To finish by hand: ALTER DATABASE {q(names.failed)} "
        f"RENAME TO {q(names.database)}; to go back, or ALTER DATABASE {q(names.verified)} RENAME TO "
        f"{q(names.database)}; to complete the rollback; then ALTER DATABASE {q(names.database)} "
        "ALLOW_CONNECTIONS true;"
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        return str(exc.diag.message_primary or exc).strip()
    return str(exc)
