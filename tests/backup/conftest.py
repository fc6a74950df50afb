"""Fixtures and hooks for the backup tests; they live in backup_support so tests can import its helpers."""

from backup_support import (
    bulky_db,
    fs_place,
    place,
    s3_place,
    shop_db,
)

__all__ = ["bulky_db", "fs_place", "place", "s3_place", "shop_db"]
