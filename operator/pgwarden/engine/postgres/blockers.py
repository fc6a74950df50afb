"""Who holds the lock a session waits for: pg_blocking_pids() joined to pg_stat_activity, and how a blocker is
shown to a person without any value of its query (literals masked with PostgreSQL's own parser, pglast).

Reading is one query; masking and describing are pure.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pglast import parser as pgparser

from pgwarden.api.reports import Blocker
from pgwarden.redact import redact

MASKED = "(query not shown: it does not parse, so its literals cannot be masked)"
QUERY_LIMIT = 200
_COMMENTS = frozenset({"C_COMMENT", "SQL_COMMENT"})

# The sessions `pid` waits for, only while it waits on a lock: pg_blocking_pids takes the lock manager's
# locks for a moment, so it is not called for a session that is not waiting.
_BLOCKERS = """
SELECT b.pid, b.usename, b.application_name, b.state,
       extract(epoch FROM clock_timestamp() - b.xact_start)::float8, b.query
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
JOIN pg_stat_activity b ON b.pid = blocking.pid
WHERE w.pid = %s AND w.wait_event_type = 'Lock'
ORDER BY b.xact_start NULLS LAST, b.pid
"""


def mask_query(query: str | None) -> str | None:
    """The query with every constant replaced by $n and comments left out; a query that does not parse (one
    cut short by track_activity_query_size, say) is masked wholesale, never shown raw (pure)."""
    if query is None or not query.strip():
        return query
    if query.startswith("<") and query.endswith(">"):  # "<insufficient privilege>": PostgreSQL's own words
        return query
    try:
        normalized = pgparser.normalize(query)
        tokens = pgparser.scan(normalized)
    except (pgparser.ParseError, ValueError):
        return MASKED
    kept, position = [], 0
    for token in tokens:
        if token.name in _COMMENTS:
            kept.append(normalized[position : token.start])
            position = token.end + 1
    kept.append(normalized[position:])
    flat = " ".join("".join(kept).split())
    flat = redact(flat)
    return flat if len(flat) <= QUERY_LIMIT else flat[: QUERY_LIMIT - 1] + "…"


def read_blockers(conn: psycopg.Connection[Any], pid: int) -> list[Blocker]:
    """The sessions `pid` is waiting for right now (none when it is not waiting on a lock)."""
    rows = conn.execute(_BLOCKERS, (pid,)).fetchall()
    return [
        Blocker(
            pid=int(blocker_pid),
            user=user,
            application_name=redact(application) if application else application,  # its owner's text
            state=state,
            transaction_seconds=round(float(age), 1) if age is not None else None,
            query=mask_query(query),
        )
        for blocker_pid, user, application, state, age, query in rows
    ]


def describe_blocker(blocker: Blocker) -> str:
    """`pid 4711 (app `billing-worker`, idle in transaction for 14 min): <masked query>` (pure)."""
    details = [f"app `{blocker.application_name or '?'}`"]
    if blocker.user:
        details.append(f"user {blocker.user}")
    state = blocker.state or "state unknown"
    if blocker.transaction_seconds is not None:
        state += f" for {span(blocker.transaction_seconds)}"
    details.append(state)
    line = f"pid {blocker.pid} ({', '.join(details)})"
    return f"{line}: {blocker.query}" if blocker.query else line


def describe_blockers(blockers: list[Blocker]) -> str:
    """`blocked by pid 1 (...); pid 2 (...)`, or that no blocker was seen (pure)."""
    if not blockers:
        return "the blocking session was not seen (the wait ended before it was sampled)"
    return "blocked by " + "; ".join(describe_blocker(b) for b in blockers)


def span(seconds: float) -> str:
    """A person's reading of a span: `850 ms`, `12 s`, `14 min`, `3 h 5 min` (pure)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
