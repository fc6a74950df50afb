"""Whether a database's schema is still what pgwarden left it, read only: its live schema against the state
its last migration run recorded, and against the state a reference database (a set's first canary) recorded
at the same version, which is what that version's migrations give.

`read_schema` is the only part that touches a server (a read-only session, short timeouts); `judge` is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pgwarden.api.fleet_drift import AGAINST_LAST_RUN, DRIFT_MESSAGE_LIMIT, DriftVerdict, TargetDrift
from pgwarden.api.reports import Difference
from pgwarden.api.schema import SchemaSnapshot
from pgwarden.engine.migrate import history
from pgwarden.engine.postgres.connect import connect, with_settings
from pgwarden.engine.postgres.inspect import take_snapshot
from pgwarden.engine.postgres.schema_diff import diff_snapshots, fingerprint, snapshot_from_json
from pgwarden.engine.postgres.state import SchemaState, drift_since

# Every session of a drift check: nothing it runs can write, and nothing waits long behind someone's DDL.
READ_ONLY_SETTINGS = {
    "default_transaction_read_only": "on",
    "lock_timeout": "5s",
    "statement_timeout": "60s",
    "idle_in_transaction_session_timeout": "60s",
}
SHOWN_DIFFERENCES = 3  # named in a target's one line; the rest are counted


@dataclass(frozen=True)
class LiveSchema:
    """A database's schema now, and the state its last migration run recorded (None: never migrated)."""

    snapshot: SchemaSnapshot
    fingerprint: str
    recorded: history.RecordedState | None


def read_schema(url: str, *, schema: str = history.DEFAULT_SCHEMA) -> LiveSchema:
    """The live schema and the recorded state of the database `url` names, in one read-only transaction."""
    with connect(with_settings(url, READ_ONLY_SETTINGS)) as conn:
        conn.read_only = True
        snapshot = take_snapshot(conn, own_schema=schema)
        recorded = history.last_state(conn, schema)
        conn.rollback()
    return LiveSchema(snapshot=snapshot, fingerprint=fingerprint(snapshot), recorded=recorded)


Reference = tuple[str, history.RecordedState]  # a reference target's name and its recorded state


def judge(target: str, live: LiveSchema, reference: Reference | None) -> tuple[TargetDrift, list[Difference]]:
    """The verdict on one target, and every difference behind it: drifted since its own last run, else
    differing from the reference's recorded schema at the same version, else in sync; not migrated when
    pgwarden recorded nothing there."""
    recorded = live.recorded
    if recorded is None:
        message = "pgwarden recorded no schema there yet (no migration run): nothing to compare with"
        return TargetDrift(target=target, verdict=DriftVerdict.NOT_MIGRATED, message=message), []
    state = SchemaState(tables=[], row_counts={}, snapshot=live.snapshot, fingerprint=live.fingerprint)
    own: list[Difference] = list(drift_since(recorded.snapshot, state)["differences"])
    if own:
        return _drifted(target, recorded.version, AGAINST_LAST_RUN, own, "since its last migration run"), own
    if reference is not None:
        name, there = reference
        if name != target and there.version == recorded.version and there.fingerprint != live.fingerprint:
            theirs = _against_reference(name, snapshot_from_json(there.snapshot), live.snapshot)
            if theirs:
                return _drifted(
                    target, recorded.version, name, theirs, f"from {name} at the same version"
                ), theirs
    return TargetDrift(target=target, verdict=DriftVerdict.IN_SYNC, version=recorded.version), []


def _drifted(
    target: str, version: str | None, against: str, differences: Sequence[Difference], where: str
) -> TargetDrift:
    shown = "; ".join(f"{d.kind} {d.object} {d.detail}" for d in differences[:SHOWN_DIFFERENCES])
    more = len(differences) - SHOWN_DIFFERENCES
    message = f"{len(differences)} difference(s) {where} (version {version or 'none'}): {shown}"
    if more > 0:
        message += f"; and {more} more"
    return TargetDrift(
        target=target,
        verdict=DriftVerdict.DRIFTED,
        version=version,
        against=against,
        differences=len(differences),
        message=_clip(message),
    )


def _against_reference(name: str, theirs: SchemaSnapshot, ours: SchemaSnapshot) -> list[Difference]:
    """The differences between the reference's recorded schema (A) and this target's (B), in those words."""
    wording = {"only in A": f"only in {name}", "only in B": f"not in {name}"}
    return [
        d.model_copy(update={"detail": wording.get(d.detail, f"{d.detail} ({name} -> here)")})
        for d in diff_snapshots(theirs, ours)
    ]


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DRIFT_MESSAGE_LIMIT else flat[: DRIFT_MESSAGE_LIMIT - 1] + "…"
