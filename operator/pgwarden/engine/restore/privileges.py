"""What a role needs for the restore rollback, known before the run: create a database, rename this one,
and give every restored object back to its owner. Read once from the catalogs; judged by a pure function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from pgwarden.engine.postgres.schema_diff import quote_ident

# (catalog, owner column, namespace column): every kind of object pg_dump writes with an owner.
_OWNED: tuple[tuple[str, str, str | None], ...] = (
    ("pg_namespace", "nspowner", None),
    ("pg_class", "relowner", "relnamespace"),
    ("pg_proc", "proowner", "pronamespace"),
    ("pg_type", "typowner", "typnamespace"),
    ("pg_collation", "collowner", "collnamespace"),
    ("pg_conversion", "conowner", "connamespace"),
    ("pg_operator", "oprowner", "oprnamespace"),
    ("pg_opfamily", "opfowner", "opfnamespace"),
    ("pg_opclass", "opcowner", "opcnamespace"),
    ("pg_ts_config", "cfgowner", "cfgnamespace"),
    ("pg_ts_dict", "dictowner", "dictnamespace"),
    ("pg_statistic_ext", "stxowner", "stxnamespace"),
    ("pg_event_trigger", "evtowner", None),
    ("pg_publication", "pubowner", None),
    ("pg_foreign_data_wrapper", "fdwowner", None),
    ("pg_foreign_server", "srvowner", None),
    ("pg_largeobject_metadata", "lomowner", None),
    ("pg_default_acl", "defaclrole", None),
)
_SYSTEM_SCHEMA = "{n}.nspname <> 'information_schema' AND {n}.nspname NOT LIKE 'pg\\_%'"


def _owners_query() -> str:
    """Owners of the database's own objects (not the system's, not an extension's members, not parts of
    another object such as a table's row type) whom the current role cannot act as."""
    parts = []
    for catalog, owner, namespace in _OWNED:
        where = [
            f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
            "AND d.objid = x.oid AND d.deptype IN ('e', 'i'))"
        ]
        if catalog == "pg_namespace":
            where.append(_SYSTEM_SCHEMA.format(n="x") + " AND x.nspname <> 'public'")
        join = ""
        if namespace:
            join = f" JOIN pg_namespace n ON n.oid = x.{namespace}"
            where.append(_SYSTEM_SCHEMA.format(n="n"))
        parts.append(f"SELECT x.{owner} AS owner FROM {catalog} x{join} WHERE {' AND '.join(where)}")
    return (
        "SELECT DISTINCT pg_get_userbyid(o.owner) FROM (" + " UNION ".join(parts) + ") o "
        "WHERE NOT (pg_has_role(o.owner, 'USAGE') AND pg_has_role(o.owner, 'MEMBER')) ORDER BY 1"
    )


_ROLE = """
SELECT current_user, r.rolsuper, r.rolcreatedb, d.datname, pg_get_userbyid(d.datdba),
       pg_has_role(d.datdba, 'USAGE') AND pg_has_role(d.datdba, 'MEMBER')
  FROM pg_roles r JOIN pg_database d ON d.datname = current_database()
 WHERE r.rolname = current_user
"""
# Extensions only a superuser may create (pg_dump writes CREATE EXTENSION; built-in ones it skips).
_UNTRUSTED = """
SELECT e.extname FROM pg_extension e
  JOIN pg_available_extension_versions v ON v.name = e.extname AND v.version = e.extversion
 WHERE e.oid >= 16384 AND v.superuser AND NOT v.trusted ORDER BY 1
"""


@dataclass(frozen=True)
class RoleFacts:
    """The connected role and what it may do to the database it is connected to."""

    role: str
    superuser: bool
    createdb: bool
    database: str
    owner: str
    acts_as_owner: bool
    foreign_owners: tuple[str, ...] = ()
    untrusted_extensions: tuple[str, ...] = ()


def read_role_facts(conn: psycopg.Connection[Any]) -> RoleFacts:
    """The facts `missing_for_restore` judges, read on a connection to the database to be protected."""
    row = conn.execute(_ROLE).fetchone()
    assert row is not None  # the connected role and database exist
    role, superuser, createdb, database, owner, acts_as_owner = row
    foreign: tuple[str, ...] = ()
    untrusted: tuple[str, ...] = ()
    if not superuser:
        foreign = tuple(str(r) for (r,) in conn.execute(_owners_query()).fetchall())
        untrusted = tuple(str(e) for (e,) in conn.execute(_UNTRUSTED).fetchall())
    return RoleFacts(
        role=str(role),
        superuser=bool(superuser),
        createdb=bool(createdb),
        database=str(database),
        owner=str(owner),
        acts_as_owner=bool(acts_as_owner),
        foreign_owners=foreign,
        untrusted_extensions=untrusted,
    )


def missing_for_restore(facts: RoleFacts) -> list[str]:
    """What the role lacks for the restore rollback, each with the statement that grants it (pure)."""
    if facts.superuser:
        return []
    role, db = quote_ident(facts.role), quote_ident(facts.database)
    missing = []
    if not facts.createdb:
        missing.append(
            f"CREATEDB: the backup is restored into a new database, which {role} may not create "
            f"(ALTER ROLE {role} CREATEDB)"
        )
    if not facts.acts_as_owner:
        missing.append(
            f"ownership of database {db}: only its owner ({quote_ident(facts.owner)}) may rename it to swap "
            f"the restored one in (ALTER DATABASE {db} OWNER TO {role}, or GRANT {quote_ident(facts.owner)} "
            f"TO {role})"
        )
    if facts.foreign_owners:
        owners = ", ".join(quote_ident(o) for o in facts.foreign_owners)
        missing.append(
            f"membership in {owners}: objects in {db} belong to them, and the restore gives each object back "
            f"to its owner (GRANT {owners} TO {role})"
        )
    if facts.untrusted_extensions:
        listed = ", ".join(facts.untrusted_extensions)
        missing.append(f"superuser: extension(s) {listed} can only be created by a superuser")
    return missing
