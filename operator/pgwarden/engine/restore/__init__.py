"""Restoring a backup: restore with its checks against the manifest, `backup --verify` (`verify`), restore
drills, the privileges a restore rollback needs, the pre-migration safety net and its swap by rename.

It may import the `backup` room (reading stored dumps back), `postgres`, storage and api, never `migrate`."""
