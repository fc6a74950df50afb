"""PostgreSQL itself: connections, databases, counts, inspection, schema diff, scratch databases, the client tools and server errors."""
