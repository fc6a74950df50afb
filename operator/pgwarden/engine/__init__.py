"""The engine: everything that touches PostgreSQL, pg_dump and storage. No Kubernetes here."""
