"""What a benchmark's numbers were measured on: the core count and the load beside it.

Every bench prints this line before and after its run: a ratio measured on a 2-core machine with a load of
10 means something else than on a quiet one, and the reader of bench/README.md must be able to tell.
"""

from __future__ import annotations

import os


def describe() -> str:
    """`machine: 2 cores, load average 0.52 0.61 0.70 (1, 5, 15 min)`."""
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"
