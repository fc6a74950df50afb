"""PostgreSQL itself: connections, whole databases, row counts, inspection, schema diff and fingerprints,
scratch databases (and their guardian), the client tools (pg_dump, pg_restore) and server errors in words.

The lowest room: it may import `pgwarden.api`, `pgwarden.errors` and `pgwarden.redact`, never storage or
another room, so everything above can lean on it."""
