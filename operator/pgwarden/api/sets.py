"""What the two set kinds share: which databases they cover (`targets`) and the blocks of their status.

A set (DatabaseMigrationSet, DatabaseBackupSet) is one intent over many databases, each a Secret of the
set's namespace: the set makes one child resource per target and its status holds only counts and the
failures by name, so it stays within a fixed size however many targets there are.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from pgwarden.api.base import ApiModel
from pgwarden.api.common import (
    API_GROUP,
    CONDITIONS_SCHEMA_EXTRA,
    Condition,
    SecretKeyRef,
    SecretRef,
    SslMode,
    cel,
    count_set,
    exactly_one_rule,
    validations,
)

# The label every child carries: `kubectl get dbmig -l pgwarden.io/set=<name>` lists a set's children.
SET_LABEL = f"{API_GROUP}/set"
# A set's name is a label value on its children, which Kubernetes caps at 63 characters.
SET_NAME_LIMIT = 63
SET_NAME_RULE = cel(
    f"self.metadata.name.size() <= {SET_NAME_LIMIT}",
    f"a set's name is at most {SET_NAME_LIMIT} characters: it is the value of the label {SET_LABEL} on "
    "every resource it makes",
)
TARGETS_LIMIT = 1000
ORDER_VALUES_LIMIT = 16
# What the status lists by name at most; the rest are counted (status stays small at 1,000 targets).
LISTED_LIMIT = 20
TARGET_MESSAGE_LIMIT = 200

_ONE_WAY = "targets needs exactly one of selector or list"
_SELECTOR_EMPTY = (
    "targets.selector needs matchLabels or matchExpressions: an empty selector would take every Secret of the "
    "namespace (ServiceAccount tokens, storage credentials) for a database"
)
_VALUES_NEED_LABEL = "rollout.order.values goes with rollout.order.byLabel: the label whose values they are"
_LABEL_NEEDS_VALUES = (
    "rollout.order.byLabel needs values: the label's values in the order they roll out, e.g. [staging, "
    "production]; targets with another value or none come last"
)

LabelKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=317,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    ),
]
LabelValue = Annotated[str, Field(max_length=63, pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")]


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorRequirement(ApiModel):
    """One requirement of a label selector, as in a Deployment's selector."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                "In and NotIn need values; Exists and DoesNotExist take none",
            )
        )
    )

    key: LabelKey = Field(description="A label key, e.g. pgwarden.io/tenant or tier.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[LabelValue] | None = Field(
        default=None, max_length=64, description="For In and NotIn: the label values."
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> SelectorRequirement:
        wants = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if wants != bool(self.values):
            raise ValueError("In and NotIn need values; Exists and DoesNotExist take none")
        return self


class LabelSelector(ApiModel):
    """Secrets of the set's namespace by their labels (every requirement must hold)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("size(self.matchLabels) > 0 || size(self.matchExpressions) > 0", _SELECTOR_EMPTY)
        )
    )

    match_labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels a Secret must carry with exactly these values, e.g. {pgwarden.io/tenant-db: 'true'}.",
    )
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Further requirements on a Secret's labels."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError(_SELECTOR_EMPTY)
        return self


class SetTargets(ApiModel):
    """The databases of a set: Secrets of its namespace, each holding one database's connection in the keys
    `spec.database.secretRef` of a DatabaseMigration accepts (`uri`, or `host`, `port`, `dbname`, `user`,
    `password`)."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel(exactly_one_rule(["selector", "list"]), _ONE_WAY))
    )

    selector: LabelSelector | None = Field(
        default=None,
        description=(
            "Every Secret of the namespace whose labels match, now and later: a Secret that comes to match gets "
            "its child. The operator lists only the Secrets' names, never their contents; it needs the chart "
            "value sets.selectSecrets=true (list and watch on Secrets in the watched namespaces)."
        ),
    )
    list_: list[SecretRef] | None = Field(
        default=None,
        alias="list",
        min_length=1,
        max_length=TARGETS_LIMIT,
        description="The Secrets, by name. Needs no access to Secrets at all.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    ssl_mode: SslMode | None = Field(
        default=None, description="libpq sslmode of every target (spec.database.sslMode of each child)."
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None, description="CA certificate every target's server is verified against (verify-ca/full)."
    )

    @model_validator(mode="after")
    def _one_way(self) -> SetTargets:
        if count_set(self, ["selector", "list_"]) != 1:
            raise ValueError(_ONE_WAY)
        names = [ref.name for ref in self.list_ or []]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"targets.list names {', '.join(duplicates)} more than once")
        return self


class RolloutOrder(ApiModel):
    """In which order targets start: by Secret name, or first by the value of one of their labels."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!has(self.values) || has(self.byLabel)", _VALUES_NEED_LABEL),
            cel("!has(self.byLabel) || (has(self.values) && size(self.values) > 0)", _LABEL_NEEDS_VALUES),
        )
    )

    by_label: LabelKey | None = Field(
        default=None, description="A label of the targets' Secrets, e.g. tier. Unset: by Secret name."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        min_length=1,
        max_length=ORDER_VALUES_LIMIT,
        description=(
            "That label's values in the order their targets start, e.g. [staging, production]; targets with "
            "another value or none come last. Within one value: by Secret name."
        ),
    )

    @model_validator(mode="after")
    def _label_and_values(self) -> RolloutOrder:
        if self.values and not self.by_label:
            raise ValueError(_VALUES_NEED_LABEL)
        if self.by_label and not self.values:
            raise ValueError(_LABEL_NEEDS_VALUES)
        return self


class Rollout(ApiModel):
    """How a set's targets start: canaries alone first, then a bounded number at once, stopping on failures."""

    canary: int = Field(
        default=1,
        ge=0,
        le=TARGETS_LIMIT,
        description="The first N targets (in order) run alone; the rest start once they all succeeded.",
    )
    max_parallel: int = Field(
        default=1, ge=1, le=TARGETS_LIMIT, description="At most this many targets run at once."
    )
    max_failures: int = Field(
        default=1,
        ge=1,
        le=TARGETS_LIMIT,
        description=(
            "After this many failed targets no new target starts and the set is Halted (running ones finish). "
            "A failed canary halts the set whatever this says."
        ),
    )
    order: RolloutOrder = Field(default_factory=RolloutOrder, description="The order targets start in.")


class TargetCounts(ApiModel):
    """How many targets stand where (their children's phases)."""

    total: int = Field(default=0, description="Targets of the set.")
    done: str = Field(default="0/0", description="Succeeded out of total, as `kubectl get` shows it: 12/40.")
    succeeded: int = Field(default=0, description="Targets whose child succeeded for the current spec.")
    failed: int = Field(default=0, description="Targets whose child failed, rolled back or was cancelled.")
    running: int = Field(default=0, description="Targets started and not finished yet.")
    pending: int = Field(default=0, description="Targets waiting for their turn (or for approval).")
    skipped: int = Field(default=0, description="Targets a halted set will not start.")


class TargetFailure(ApiModel):
    """One target that failed, with the one line its child says."""

    target: str = Field(description="The target's Secret.")
    resource: str = Field(description="The child resource, which has the details.")
    message: str | None = Field(default=None, description="Its error, in one line (clipped).")


class VersionCount(ApiModel):
    """How many targets a schema version has."""

    version: str = Field(description="A schema version, or `none` for targets not migrated yet.")
    targets: int = Field(description="How many targets are at it.")


class SetPhase(StrEnum):
    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROGRESSING = "Progressing"
    HALTED = "Halted"
    COMPLETE = "Complete"
    FAILED = "Failed"
    READY = "Ready"
    DEGRADED = "Degraded"


class SetStatus(ApiModel):
    """What every set's status says: the decision the operator wrote last, for which generation."""

    phase: SetPhase | None = Field(default=None, description="Where the set stands.")
    observed_generation: int | None = Field(default=None, description="The generation the status describes.")
    conditions: list[Condition] = Field(
        default_factory=list, description="The set's conditions.", json_schema_extra=CONDITIONS_SCHEMA_EXTRA
    )
    message: str | None = Field(default=None, description="A one-line summary.")
    failures: list[TargetFailure] = Field(
        default_factory=list, description=f"Failed targets, in rollout order (at most {LISTED_LIMIT})."
    )
    failures_total: int | None = Field(default=None, description="How many targets failed in all.")

    def to_status(self) -> dict[str, object]:
        """The JSON written to the set's status (what the operator set; nothing unset or null)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
