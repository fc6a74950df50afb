"""`backup --verify`: restore a just-dumped backup into a scratch database and compare it with its manifest.

The backup room calls this through `BackupOptions.verify` (it may not import the restore room), between the
dump landing and its manifest being written, so a dump that does not restore as recorded is never listed."""

from __future__ import annotations

from psycopg import sql

from pgwarden.api.reports import RestoreComparison
from pgwarden.engine.backup.backup import Progress
from pgwarden.engine.backup.stored_dump import Identities
from pgwarden.engine.postgres.connect import connect
from pgwarden.engine.postgres.scratch import VERIFY_PREFIX, scratch_database
from pgwarden.engine.restore.restore import compare_counts, restore_manifest, restored_state
from pgwarden.storage import BackupManifest, Storage


def verify_backup(
    url: str,
    backup: Storage,
    manifest: BackupManifest,
    *,
    jobs: int,
    schemas: set[str] | None = None,
    identities: Identities = (),
    progress: Progress,
) -> RestoreComparison:
    """Restore into a scratch database on the same server, compare counts, and drop it again.
    `schemas` are created first: a dump limited to tables (pg_dump -t) holds no CREATE SCHEMA."""
    scratch = f"{VERIFY_PREFIX}{manifest.id.replace('-', '_').lower()}"
    progress(f"verifying: restoring into scratch database {scratch}")
    # Dropped however the verification ends, by its guardian if this process is killed (engine.postgres.scratch).
    with scratch_database(url, scratch, say=progress) as scratch_url:
        if schemas:
            with connect(scratch_url, autocommit=True) as conn:
                for name in sorted(schemas):
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))
        restore_manifest(scratch_url, backup, manifest, jobs=jobs, identities=identities, progress=progress)
        counts, schema = restored_state(scratch_url)
    return compare_counts(
        manifest.per_table, counts, expected_schema=manifest.schema_fingerprint, actual_schema=schema
    )
