"""Restoring a backup: restore, privileges, restore drills, the safety net and its swap."""
