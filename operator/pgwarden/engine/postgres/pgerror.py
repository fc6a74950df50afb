"""A server error in words fit for a report: what failed and where, never the row values it was about.

PostgreSQL copies data into its messages: `Key (email)=(alice@example.com) already exists`, `Failing row
contains (...)`, `invalid input syntax for type integer: "..."`. Reports end up in Kubernetes status and
logs that more people read than the database, so the values are replaced with `…` and the shape is kept:
the message, the columns, the constraint and table names say what to fix.
"""

from __future__ import annotations

import re

import psycopg

from pgwarden.redact import redact

HIDDEN = "…"

# Primary messages that quote a value taken from the data (PostgreSQL's English wording).
_PRIMARY_WITH_VALUE = (
    re.compile(r'^(?P<head>invalid input syntax for type [^:]+: )".*"$', re.DOTALL),
    re.compile(r'^(?P<head>invalid input value for enum [^:]+: )".*"$', re.DOTALL),
    re.compile(r'^(?P<head>date/time field value out of range: )".*"$', re.DOTALL),
    re.compile(r'^(?P<head>value )".*"(?P<tail> is out of range for type [^"]+)$', re.DOTALL),
)
# Detail heads whose parenthesised column list is followed by the values: `Key (a, b)=(1, 2) ...`.
_KEY = re.compile(
    r"^(?P<head>(?:Key|Partition key of the failing row contains) \((?P<columns>.*?)\))(?P<eq> ?= ?)\("
)
_KEY_TAILS = (
    re.compile(r"\) already exists\.$"),
    re.compile(r"\) is duplicated\.$"),
    re.compile(r'\) is not present in table "[^"]*"\.$'),
    re.compile(r'\) is still referenced from table "[^"]*"\.$'),
)
_ROW = re.compile(r"^(?P<head>Failing row contains )\(", re.DOTALL)
_TOKEN = re.compile(r'^(?P<head>Token )".*"(?P<tail> is invalid\.)$', re.DOTALL)
# Any other `(...)=(...)`, e.g. a translated key detail: hide from the first `=(` to the last `)`.
_ANY_VALUES = re.compile(r"(?P<eq> ?= ?)\(.*\)", re.DOTALL)


def describe_error(exc: psycopg.Error) -> str:
    """The server's primary message and the shape of its detail, values hidden, secrets masked."""
    diag = exc.diag
    primary = diag.message_primary
    if not primary:  # raised by the client (connection, protocol): no server detail to hide
        return redact(str(exc).strip() or type(exc).__name__)
    text = hide_values_in_primary(primary)
    if diag.message_detail:
        text += f" ({hide_values_in_detail(diag.message_detail)})"
    return redact(text)


def hide_values_in_primary(message: str) -> str:
    """The primary message with a quoted data value replaced by `…`."""
    for pattern in _PRIMARY_WITH_VALUE:
        match = pattern.match(message)
        if match:
            return f'{match.group("head")}"{HIDDEN}"{match.groupdict().get("tail") or ""}'
    return message


def hide_values_in_detail(detail: str) -> str:
    """The detail with every row value replaced by `…`; column, constraint and table names stay."""
    detail = detail.strip()
    row = _ROW.match(detail)
    if row:
        return f"{row.group('head')}({HIDDEN})."
    token = _TOKEN.match(detail)
    if token:
        return f'{token.group("head")}"{HIDDEN}"{token.group("tail")}'
    key = _KEY.match(detail)
    if key:
        return f"{key.group('head')}{key.group('eq')}({HIDDEN}{_key_tail(detail, key.group('columns'))}"
    return _ANY_VALUES.sub(lambda m: f"{m.group('eq')}({HIDDEN})", detail)


def _key_tail(detail: str, columns: str) -> str:
    """What follows the values when it is one of PostgreSQL's known sentences; nothing otherwise."""
    for tail in _KEY_TAILS:
        match = tail.search(detail)
        if match:
            return match.group(0)
    conflict = re.search(
        r"\) conflicts with (?P<which>existing key|key) \(" + re.escape(columns) + r"\)=\(.*\)\.$", detail
    )
    if conflict:
        return f") conflicts with {conflict.group('which')} ({columns})=({HIDDEN})."
    return ")"
