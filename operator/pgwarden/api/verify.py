"""The `verify` block: what must hold after a migration before its transaction commits."""

from enum import StrEnum

from pydantic import Field, model_validator

from pgwarden.api.base import ApiModel


class RowCountMode(StrEnum):
    """How rows are counted before and after a run."""

    EXACT = "exact"
    ESTIMATE = "estimate"
    NONE = "none"


class Expectations(ApiModel):
    """Objects that must exist after the run; names may be schema-qualified (default schema `public`)."""

    tables: list[str] = Field(
        default_factory=list, description="Tables that must exist, e.g. `orders` or `shop.orders`."
    )
    columns: list[str] = Field(
        default_factory=list,
        description="Columns that must exist, as `table.column` or `schema.table.column`.",
    )
    indexes: list[str] = Field(default_factory=list, description="Indexes that must exist and be valid.")


class Check(ApiModel):
    """A SQL query returning one value, compared with `equals` or `atLeast`."""

    name: str = Field(description="A short name shown in the report.", min_length=1)
    sql: str = Field(description="A query returning a single value (one row, one column).", min_length=1)
    equals: int | float | str | bool | None = Field(default=None, description="The value must equal this.")
    at_least: int | float | None = Field(default=None, description="The value must be at least this number.")

    @model_validator(mode="after")
    def _one_comparison(self) -> "Check":
        if (self.equals is None) == (self.at_least is None):
            raise ValueError(f"check {self.name!r} needs exactly one of 'equals' or 'atLeast'")
        return self


class VerifySpec(ApiModel):
    """Verification that gates the commit of a migration run."""

    row_counts: RowCountMode = Field(
        default=RowCountMode.EXACT,
        description="exact counts every row (in parallel); estimate reads planner statistics; none skips counting.",
    )
    allow_row_loss_in: list[str] = Field(
        default_factory=list, description="Tables allowed to lose rows during the run (others fail the run)."
    )
    expect: Expectations = Field(
        default_factory=Expectations, description="Objects that must exist afterwards."
    )
    checks: list[Check] = Field(default_factory=list, description="Custom SQL checks.")
