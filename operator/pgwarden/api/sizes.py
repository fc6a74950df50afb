"""Sizes as people read them, in IEC units (1 KiB = 1024 bytes): the same in status and on the command line."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(size: int | None) -> str:
    """`512 B`, `96.0 KiB`, `1.2 GiB`; `? bytes` when the size is not known."""
    if size is None:
        return "? bytes"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
