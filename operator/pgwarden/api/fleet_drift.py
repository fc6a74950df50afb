"""Drift across a fleet: a DatabaseMigrationSet's scheduled, read-only check of every target's schema.

The three sides of one contract: what the set asks (`spec.drift`), what a drift Job is told (`DriftTask`) and
reports (`DriftReport`), and what the set's status shows of it (`FleetDriftStatus`). A target has drifted when
its live schema differs from the one pgwarden recorded after its last migration run (the history schema's
`schema_state`), or, at the version the set's reference target (its first canary) is at, from the schema the
reference recorded there: what that version's migrations give.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from pgwarden.api.backup import check_schedule, schedule_rules
from pgwarden.api.base import ApiModel
from pgwarden.api.common import validations
from pgwarden.api.reports import ErrorInfo, Outcome
from pgwarden.api.sets import TARGET_MESSAGE_LIMIT

# What the status names at most (the rest are counted); small, so the set's status keeps its size budget.
DRIFTED_LISTED_LIMIT = 10
UNCHECKED_LISTED_LIMIT = 5
DRIFT_MESSAGE_LIMIT = TARGET_MESSAGE_LIMIT  # a target's line in a Job's report
NOTE_LIMIT = 120  # a target's line in the set's status
# The reference's recorded state is compared only with targets at its version; "lastRun" is a target's own.
AGAINST_LAST_RUN = "lastRun"


class DriftCheck(ApiModel):
    """When the set checks its targets for drift: a CronJob per few dozen targets, on this schedule."""

    model_config = ConfigDict(json_schema_extra=validations(*schedule_rules("drift.schedule", required=True)))

    schedule: str = Field(
        max_length=128,
        description=(
            "A cron schedule, e.g. '17 * * * *' (hourly). Each run connects to every target read only, "
            "fingerprints its schema and compares it with what pgwarden recorded after the target's last "
            "migration run, and with what the set's first canary recorded at the same version."
        ),
    )
    suspend: bool = Field(default=False, description="Pause the checks; a running one finishes.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        return check_schedule(schedule, "drift.schedule")


# -- the Job: task and report ----------------------------------------------------------------------------


class DriftTask(ApiModel):
    """What a drift Job checks: the targets whose credentials its pod has (PGWARDEN_TARGET_<i>_*, in this
    order), and the reference whose recorded schema is what the set's version gives (PGWARDEN_REFERENCE_*)."""

    targets: list[str] = Field(description="The targets' Secrets, in the order of their env vars.")
    reference: str | None = Field(
        default=None, description="The reference target's Secret (the first canary)."
    )
    history_schema: str = Field(default="pgwarden", description="Where pgwarden's history and states are.")


class DriftVerdict(StrEnum):
    IN_SYNC = "InSync"
    DRIFTED = "Drifted"
    NOT_MIGRATED = "NotMigrated"  # no state recorded: pgwarden never migrated it, nothing to compare with
    UNREACHABLE = "Unreachable"  # no connection, no credentials, or the schema could not be read


class TargetDrift(ApiModel):
    """One target's verdict, in one line."""

    target: str = Field(description="The target's Secret.")
    verdict: DriftVerdict = Field(description="InSync, Drifted, NotMigrated or Unreachable.")
    version: str | None = Field(default=None, description="The version its last migration run recorded.")
    against: str | None = Field(
        default=None,
        description="What it differs from: lastRun (its own recorded schema), or the reference target's name.",
    )
    differences: int = Field(default=0, description="How many schema objects differ.")
    message: str | None = Field(
        default=None, description="What differs (the first few), or why it was not checked."
    )


class DriftCounts(ApiModel):
    """How many targets a check covered, and how each came out."""

    targets: int = Field(default=0, description="Targets checked.")
    in_sync: int = Field(default=0, description="Targets whose schema is what it should be.")
    drifted: int = Field(default=0, description="Targets whose schema differs.")
    unchecked: int = Field(default=0, description="Targets never migrated, or not reachable.")


class DriftReference(ApiModel):
    """The reference target's recorded schema: what the set's version gives."""

    target: str
    version: str | None = None
    fingerprint: str | None = Field(default=None, description="SHA-256 of its recorded schema snapshot.")
    message: str | None = Field(default=None, description="Why it serves as no reference, when it does not.")


class DriftReport(ApiModel):
    """What `pgwarden job drift` reports: counts, and every target not in sync (drifted first), by name."""

    outcome: Outcome = Field(
        default=Outcome.FAILED,
        description="Succeeded once the targets were looked at (whatever they showed); Failed if none could be.",
    )
    counts: DriftCounts = Field(default_factory=DriftCounts)
    findings: list[TargetDrift] = Field(
        default_factory=list, description="The targets not in sync: drifted ones first, each group by name."
    )
    reference: DriftReference | None = None
    error: ErrorInfo | None = None


# -- the set's status ------------------------------------------------------------------------------------


class TargetNote(ApiModel):
    """A target named in the set's drift status, in one line."""

    target: str = Field(description="The target's Secret.")
    message: str | None = Field(
        default=None, description="What differs, or why it was not checked (clipped)."
    )


class FleetDriftStatus(ApiModel):
    """The last drift check of every target, summed over the set's drift Jobs (one per few dozen targets);
    each Job's log names every difference (`kubectl logs -l pgwarden.io/task=drift`)."""

    checked_at: datetime | None = Field(default=None, description="When the newest of those Jobs finished.")
    targets: int = Field(default=0, description="Targets the last checks covered.")
    in_sync: int = Field(default=0, description="Targets whose schema is what it should be.")
    drifted: int = Field(default=0, description="Targets whose schema differs.")
    unchecked: int = Field(default=0, description="Targets never migrated, or not reachable.")
    drifted_targets: list[TargetNote] = Field(
        default_factory=list, description=f"Drifted targets by name (at most {DRIFTED_LISTED_LIMIT})."
    )
    unchecked_targets: list[TargetNote] = Field(
        default_factory=list, description=f"Targets not checked, by name (at most {UNCHECKED_LISTED_LIMIT})."
    )
    reports: str | None = Field(
        default=None,
        description=(
            "Which drift Jobs' reports this is (a digest of their names: the newest finished Job of each "
            "CronJob), so their pods are read only when one is new."
        ),
    )
