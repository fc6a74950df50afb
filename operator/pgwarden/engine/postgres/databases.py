"""Whole databases, worked on from the maintenance database: create one like another, copy its database-level
properties, close it to connections, end its sessions, rename it.

A dump made without `--create` holds none of a database's own properties (owner, locale, grants, settings,
comment), so a database restored under a new name gets them here, from what the original had before the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.engine.postgres.connect import connect, with_database

MAINTENANCE_DATABASE = "postgres"
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names
PRIVILEGES = {"CREATE", "CONNECT", "TEMPORARY"}
PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# Every wait of ours is bounded; ALTER DATABASE RENAME itself waits up to 5 s for sessions to leave.
SESSION_SETTINGS = {"lock_timeout": "30s", "statement_timeout": "5min"}

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class Grant:
    """One privilege on the database; `grantee` None is PUBLIC."""

    grantee: str | None
    privilege: str
    grantable: bool


@dataclass(frozen=True)
class Setting:
    """A session default stored for the database (`role` None) or for one role in it."""

    role: str | None
    name: str
    value: str


@dataclass(frozen=True)
class DatabaseProperties:
    """What a database is besides its contents, as pg_database and its neighbours record it."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None  # libc, icu or builtin; None before PostgreSQL 15
    locale: str | None  # the ICU or builtin locale
    icu_rules: str | None
    tablespace: str
    connection_limit: int
    allow_connections: bool
    grants: tuple[Grant, ...] | None  # None: the default privileges (datacl is NULL)
    settings: tuple[Setting, ...]
    comment: str | None


def derived_name(dbname: str, suffix: str) -> str:
    """`<dbname><suffix>`, the database name shortened on a character boundary so the whole fits 63 bytes."""
    budget = MAX_NAME_BYTES - len(suffix.encode())
    return dbname.encode()[:budget].decode(errors="ignore") + suffix


def maintenance_url(url: str) -> str:
    return with_database(url, MAINTENANCE_DATABASE)


@contextmanager
def maintenance(url: str) -> Iterator[Connection]:
    """A short autocommit session on the maintenance database, its waits bounded."""
    with connect(maintenance_url(url), autocommit=True) as conn:
        for name, value in SESSION_SETTINGS.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        yield conn


def exists(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _locale_columns(server_version: int) -> str:
    if server_version >= 170000:
        return "d.datlocprovider::text, d.datlocale, d.daticurules"
    if server_version >= 160000:
        return "d.datlocprovider::text, d.daticulocale, d.daticurules"
    if server_version >= 150000:
        return "d.datlocprovider::text, d.daticulocale, NULL"
    return "NULL, NULL, NULL"


def read_properties(conn: Connection, name: str) -> DatabaseProperties:
    """The properties of database `name` (LookupError when there is none)."""
    query = (
        "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
        f"{_locale_columns(conn.info.server_version)}, t.spcname, d.datconnlimit, d.datallowconn, "
        "d.datacl IS NULL, shobj_description(d.oid, 'pg_database') "
        "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s"
    )
    row = conn.execute(query, [name]).fetchone()
    if row is None:
        raise LookupError(f"database {name!r} does not exist")
    owner, encoding, collate, ctype, provider, locale, rules, space, limit, allow, default_acl, comment = row
    return DatabaseProperties(
        name=name,
        owner=str(owner),
        encoding=str(encoding),
        collate=str(collate),
        ctype=str(ctype),
        locale_provider=PROVIDERS.get(str(provider)) if provider else None,
        locale=str(locale) if locale else None,
        icu_rules=str(rules) if rules else None,
        tablespace=str(space),
        connection_limit=int(limit),
        allow_connections=bool(allow),
        grants=None if default_acl else read_grants(conn, name),
        settings=read_settings(conn, name),
        comment=str(comment) if comment is not None else None,
    )


def read_grants(conn: Connection, name: str) -> tuple[Grant, ...]:
    rows = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
        "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2",
        [name],
    ).fetchall()
    return tuple(Grant(None if g is None else str(g), str(p), bool(o)) for g, p, o in rows)


def read_settings(conn: Connection, name: str) -> tuple[Setting, ...]:
    rows = conn.execute(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, c.item "
        "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c(item) "
        "WHERE d.datname = %s ORDER BY 1 NULLS FIRST, 2",
        [name],
    ).fetchall()
    settings = []
    for role, item in rows:
        key, _, value = str(item).partition("=")
        settings.append(Setting(None if role is None else str(role), key, value))
    return tuple(settings)


def create_like(conn: Connection, name: str, like: DatabaseProperties) -> None:
    """An empty database (from template0) with the owner, encoding, locale and tablespace of `like`."""
    options = [
        sql.SQL("OWNER {}").format(sql.Identifier(like.owner)),
        sql.SQL("TEMPLATE template0 ENCODING {}").format(sql.Literal(like.encoding)),
    ]
    if like.locale_provider:
        options.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.Literal(like.locale_provider)))
    options.append(
        sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(sql.Literal(like.collate), sql.Literal(like.ctype))
    )
    if like.locale_provider == "icu" and like.locale:
        options.append(sql.SQL("ICU_LOCALE {}").format(sql.Literal(like.locale)))
        if like.icu_rules:
            options.append(sql.SQL("ICU_RULES {}").format(sql.Literal(like.icu_rules)))
    if like.locale_provider == "builtin" and like.locale:
        options.append(sql.SQL("BUILTIN_LOCALE {}").format(sql.Literal(like.locale)))
    if like.tablespace != "pg_default":
        options.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(like.tablespace)))
    conn.execute(sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(options))


def copy_properties(conn: Connection, name: str, like: DatabaseProperties) -> None:
    """Give database `name` the grants, settings, comment and connection limit `like` had
    (psycopg.Error, or ValueError when a setting cannot be reproduced exactly)."""
    target = sql.Identifier(name)
    if like.connection_limit != -1:
        conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(target, like.connection_limit))
    if like.grants is not None:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(target, sql.Identifier(like.owner)))
        for grant in like.grants:
            if grant.privilege not in PRIVILEGES:
                raise ValueError(f"unknown database privilege {grant.privilege!r}")
            grantee = sql.SQL("PUBLIC") if grant.grantee is None else sql.Identifier(grant.grantee)
            option = sql.SQL(" WITH GRANT OPTION" if grant.grantable else "")
            conn.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                    sql.SQL(grant.privilege), target, grantee, option
                )
            )
    if like.comment is not None:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(target, sql.Literal(like.comment)))
    for setting in like.settings:
        copy_setting(conn, name, setting)


def copy_setting(conn: Connection, name: str, setting: Setting) -> None:
    """Store `setting` for database `name`, checked by reading it back: PostgreSQL re-quotes list settings
    (search_path) given as one value, so a value that does not come back as it was is given as a list."""
    attempts: list[list[str]] = [[setting.value]]
    elements = split_list_setting(setting.value)
    if elements is not None and elements != [setting.value]:
        attempts.append(elements)
    for values in attempts:
        conn.execute(_set_statement(name, setting, values))
        if setting in read_settings(conn, name):
            return
    raise ValueError(
        f"setting {setting.name} = {setting.value} could not be reproduced on database {name}; "
        "PostgreSQL stored it differently"
    )


def _set_statement(name: str, setting: Setting, values: list[str]) -> sql.Composed:
    parameter = sql.Identifier(*setting.name.split("."))
    value = sql.SQL(", ").join(sql.Literal(v) for v in values)
    if setting.role is None:
        return sql.SQL("ALTER DATABASE {} SET {} TO {}").format(sql.Identifier(name), parameter, value)
    return sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} TO {}").format(
        sql.Identifier(setting.role), sql.Identifier(name), parameter, value
    )


def split_list_setting(value: str) -> list[str] | None:
    """The elements of a list setting as PostgreSQL stores it (`"$user", public`), or None when `value`
    is not such a list (pure; the rules of SplitIdentifierString)."""
    elements, rest = [], value.strip()
    while True:
        if rest.startswith('"'):
            end = 1
            while True:
                end = rest.find('"', end)
                if end < 0:
                    return None
                if rest[end + 1 : end + 2] == '"':
                    end += 2
                    continue
                break
            elements.append(rest[1:end].replace('""', '"'))
            rest = rest[end + 1 :].lstrip()
        else:
            head, _, _ = rest.partition(",")
            element = head.strip()
            if not element or '"' in element:
                return None
            elements.append(element)
            rest = rest[len(head) :]
        if not rest:
            return elements
        if not rest.startswith(","):
            return None
        rest = rest[1:].lstrip()


def allow_connections(conn: Connection, name: str, allowed: bool) -> None:
    """Open or close a database to new connections (superusers included)."""
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allowed else "false")
        )
    )


def end_sessions(conn: Connection, name: str, *, wait_seconds: float = 15.0) -> list[str]:
    """Terminate every session on database `name` and wait for them to leave; describes those that stay.
    (Autovacuum workers are left to ALTER DATABASE, which ends them itself.)"""
    deadline = time.monotonic() + wait_seconds
    refused: dict[int, str] = {}
    while True:
        sessions = conn.execute(
            "SELECT pid, coalesce(usename, '?') FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid() AND backend_type IS DISTINCT FROM 'autovacuum worker'",
            [name],
        ).fetchall()
        if not sessions:
            return []
        for pid, role in sessions:
            if pid in refused:
                continue
            try:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            except psycopg.errors.InsufficientPrivilege:
                refused[pid] = str(role)
        # Sessions we may not end (other roles', without pg_signal_backend) will not leave: stop waiting.
        if time.monotonic() >= deadline or all(pid in refused for pid, _role in sessions):
            return [f"pid {pid} (role {role})" for pid, role in sessions]
        time.sleep(0.2)


def rename(conn: Connection, old: str, new: str) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def drop(conn: Connection, name: str, *, attempts: int = 3) -> None:
    """Drop a database pgwarden created itself (a scratch restore), ending sessions still on it.

    Sessions are ended first, then a plain DROP ends any autovacuum worker itself: `WITH (FORCE)` would
    refuse to end one for a role without SUPERUSER, and a freshly restored copy is where autovacuum goes.
    PostgreSQL waits only 5 s for those workers to go (longer on a busy machine), and a session may come
    back in between, so "being accessed by other users" is retried."""
    for attempt in range(1, attempts + 1):
        end_sessions(conn, name, wait_seconds=5.0)
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts:
                raise
