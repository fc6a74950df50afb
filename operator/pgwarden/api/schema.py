"""A database's schema as plain data, so it can be stored, fingerprinted and compared without a server.

A snapshot covers the user's objects: every schema but `pg_catalog`, `information_schema`, `pg_toast*`,
`pg_temp*` and pgwarden's own, and never objects that belong to an extension. It holds no oids, so two
databases made by the same DDL give equal snapshots.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.reports import Difference


class TableKind(StrEnum):
    ORDINARY = "ordinary"
    PARTITIONED = "partitioned"


class Column(ApiModel):
    name: str
    type: str = Field(description="As format_type prints it, e.g. 'character varying(20)'.")
    nullable: bool = True
    default: str | None = Field(default=None, description="The default expression, if any.")
    identity: str | None = Field(default=None, description="'always' or 'by default' for identity columns.")
    generated: str | None = Field(default=None, description="The expression of a generated column.")


class Table(ApiModel):
    schema_: str = Field(alias="schema")
    name: str
    kind: TableKind = TableKind.ORDINARY
    columns: list[Column] = Field(default_factory=list, description="In column order (attnum).")
    partition_key: str | None = Field(default=None, description="For partitioned tables, e.g. 'RANGE (day)'.")
    partition_of: str | None = Field(default=None, description="For partitions: the parent, qualified.")
    partition_bound: str | None = None


class Index(ApiModel):
    schema_: str = Field(alias="schema")
    name: str
    table: str = Field(description="The indexed table or materialized view, in the same schema.")
    definition: str = Field(description="pg_get_indexdef")
    unique: bool = False
    primary: bool = False
    valid: bool = True


class Constraint(ApiModel):
    schema_: str = Field(alias="schema")
    table: str
    name: str
    type: str = Field(description="primary key, foreign key, unique, check, exclusion or trigger")
    definition: str = Field(description="pg_get_constraintdef")


class View(ApiModel):
    schema_: str = Field(alias="schema")
    name: str
    materialized: bool = False
    definition: str = Field(description="pg_get_viewdef")


class Function(ApiModel):
    schema_: str = Field(alias="schema")
    name: str
    kind: str = Field(default="function", description="function, procedure, aggregate or window")
    arguments: str = Field(default="", description="pg_get_function_identity_arguments")
    returns: str | None = Field(default=None, description="pg_get_function_result; none for procedures")
    language: str
    definition_sha256: str = Field(description="SHA-256 of the whole definition (pg_get_functiondef).")


class Sequence(ApiModel):
    schema_: str = Field(alias="schema")
    name: str
    type: str
    start: int
    increment: int
    min_value: int
    max_value: int
    cache: int
    cycle: bool


class Trigger(ApiModel):
    schema_: str = Field(alias="schema")
    table: str
    name: str
    definition: str = Field(description="pg_get_triggerdef")
    enabled: bool = True


class UserType(ApiModel):
    """An enum or a domain (composite types come with tables, ranges are rare enough to leave out)."""

    schema_: str = Field(alias="schema")
    name: str
    kind: str = Field(description="enum or domain")
    definition: str = Field(description="Enum labels in order, or the domain's base type and constraints.")


class Extension(ApiModel):
    name: str
    version: str
    schema_: str = Field(alias="schema")


class SchemaSnapshot(ApiModel):
    """Every user object of one database, sorted by name."""

    schemas: list[str] = Field(default_factory=list)
    extensions: list[Extension] = Field(default_factory=list)
    types: list[UserType] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    indexes: list[Index] = Field(default_factory=list)
    constraints: list[Constraint] = Field(default_factory=list)
    views: list[View] = Field(default_factory=list)
    functions: list[Function] = Field(default_factory=list)
    sequences: list[Sequence] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)


class RowCounts(StrEnum):
    EXACT = "exact"
    ESTIMATE = "estimate"
    NONE = "none"


class TableRows(ApiModel):
    """One table's row count (exact or estimated, as the report says) and size on disk."""

    schema_: str | None = Field(default=None, alias="schema")
    table: str = Field(description="schema.name, identifiers quoted where PostgreSQL would quote them")
    kind: TableKind = TableKind.ORDINARY
    rows: int | None = None
    size_bytes: int | None = Field(default=None, description="Table, indexes and TOAST; partitions summed.")


class InspectReport(ApiModel):
    """The report of `pgwarden inspect`: what a database holds, counted once at one consistent moment."""

    outcome: str = "Succeeded"
    database: str = Field(description="user@host:port/dbname, never the password.")
    server_version: str
    size_bytes: int
    tables: int = Field(
        description="Ordinary and partitioned tables; partitions are counted in their parent."
    )
    rows: int | None = Field(default=None, description="Sum over perTable; none when rowCounts is none.")
    row_counts: RowCounts = RowCounts.EXACT
    estimated: bool = False
    per_table: list[TableRows] = Field(default_factory=list)
    schema_fingerprint: str
    schemas: int = 0
    partitions: int = 0
    columns: int = 0
    indexes: int = 0
    invalid_indexes: int = 0
    constraints: int = 0
    views: int = 0
    materialized_views: int = 0
    functions: int = 0
    sequences: int = 0
    triggers: int = 0
    types: int = 0
    extensions: int = 0


class DiffReport(ApiModel):
    """The report of `pgwarden diff`: how database A's schema differs from database B's."""

    outcome: str = "Succeeded"
    identical: bool
    differences: list[Difference] = Field(default_factory=list)
    a: str = Field(description="Database A (DATABASE_URL), described without its password.")
    b: str = Field(description="Database B (--against), described without its password.")
    fingerprint_a: str | None = None
    fingerprint_b: str | None = None
