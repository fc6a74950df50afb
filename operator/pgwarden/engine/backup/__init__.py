"""Taking a backup: pg_dump streamed through compression, encryption and SHA-256 to storage, copies."""
