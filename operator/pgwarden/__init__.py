"""pgwarden: declarative PostgreSQL backups, migrations, verification and rollback."""

__version__ = "0.1.0"
