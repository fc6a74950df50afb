"""Taking a backup: pg_dump streamed through our compression, age encryption and SHA-256 to storage, the
manifest last (`backup.take_backup`), the dump's table selection, lock waits, copies to further storages,
and reading a stored dump back in one pass (`stored_dump`).

It may import the `postgres` room, storage and api, never `restore` or `migrate`: `backup --verify` restores
through a verifier the caller hands in (`BackupOptions.verify`, the restore room's `verify_backup`)."""
