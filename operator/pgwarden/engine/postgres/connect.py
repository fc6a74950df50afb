"""Opening connections: a URL or libpq's PG* environment, with errors that never carry the password."""

from __future__ import annotations

import os

import psycopg
from psycopg import conninfo

from pgwarden.errors import BadInput, DatabaseUnavailable
from pgwarden.redact import redact, register_secret, register_url

APPLICATION_NAME = "pgwarden"


def resolve_url(url: str | None) -> str:
    """The connection string to use: the given one, or '' meaning libpq's PG* environment variables."""
    if url:
        register_url(url)
        try:
            conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            # from None: the parser's message quotes the string, password included; only the redacted copy goes on
            raise BadInput(f"not a valid connection string: {redact(str(exc))}") from None
        return url
    register_secret(os.environ.get("PGPASSWORD"))
    if not (os.environ.get("PGHOST") or os.environ.get("PGDATABASE") or os.environ.get("PGSERVICE")):
        raise BadInput("no DATABASE_URL given and no PGHOST/PGDATABASE in the environment; pass a URL")
    return ""


def connect(
    url: str, *, autocommit: bool = False, connect_timeout: int = 10, application_name: str = APPLICATION_NAME
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the database named by `url` ('' for the PG* environment); `application_name` says what
    the session is to whoever looks at pg_stat_activity."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=connect_timeout, application_name=application_name
        )
    except psycopg.Error as exc:
        # from None: libpq's message can quote the connection string; only the redacted copy goes on
        raise DatabaseUnavailable(f"cannot connect to {describe(url)}: {redact(str(exc)).strip()}") from None


def describe(url: str) -> str:
    """A safe, human name for a database: user@host:port/dbname, no password."""
    try:
        params = conninfo.conninfo_to_dict(url) if url else {}
    except psycopg.ProgrammingError:
        return "the database"
    host = str(params.get("host") or os.environ.get("PGHOST", "localhost"))
    port = str(params.get("port") or os.environ.get("PGPORT", "5432"))
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE", ""))
    user = str(params.get("user") or os.environ.get("PGUSER", ""))
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database (for scratch and maintenance connections)."""
    params = conninfo.conninfo_to_dict(url) if url else {}
    params["dbname"] = dbname
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def database_name(url: str) -> str:
    """The database a URL (or the PG* environment) names."""
    params = conninfo.conninfo_to_dict(url) if url else {}
    name = (
        params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user") or os.environ.get("PGUSER")
    )
    if not name:
        raise BadInput("the database has no name; put it in DATABASE_URL (…/dbname)")
    return str(name)


def with_settings(url: str, settings: dict[str, str]) -> str:
    """The same connection string, with server settings every new session starts with (libpq `options`), so
    helper connections of a run (parallel counts, reconnects) obey its lock and statement timeouts too."""
    params = conninfo.conninfo_to_dict(url) if url else {}
    base = str(params.get("options") or os.environ.get("PGOPTIONS", ""))
    extra = " ".join(f"-c {name}={_escape_option(value)}" for name, value in settings.items())
    params["options"] = f"{base} {extra}".strip()
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")
