"""The engine: everything that touches PostgreSQL, pg_dump and storage, in four rooms. No Kubernetes here.

`migrate` (the migration run) may use `restore` (rehearsal, the restore rollback), which may use `backup`
(reading stored dumps), which may use `postgres` (PostgreSQL itself); never the other way round. Each room's
`__init__` says what it owns; the import contracts in pyproject.toml hold the order (`make lint`)."""
