"""The guardian of one scratch database (`python -m pgwarden.engine.postgres.scratch_guardian`): it waits for its owner
to release it or die, and in the second case drops the database.

It reads `{"url", "name"}` from the first line of stdin. `release` on stdin means the owner is done with it;
the end of stdin without it means the owner died (or could not drop the database): the guardian waits until
the owner's session has let go of the database's advisory lock, then drops it.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import psycopg

from pgwarden.engine.postgres import databases
from pgwarden.engine.postgres.scratch import RELEASE, scratch_key
from pgwarden.errors import PgwardenError

LOCK_WAIT = "120s"
ATTEMPTS = 5


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner, which cleans up itself
    order = json.loads(sys.stdin.readline())
    if sys.stdin.readline() == RELEASE:
        return 0
    for attempt in range(ATTEMPTS):
        try:
            with databases.maintenance(str(order["url"])) as conn:
                conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
                conn.execute("SELECT pg_advisory_lock(%s)", [scratch_key(str(order["name"]))])
                databases.drop(conn, str(order["name"]))
                return 0
        except (psycopg.Error, PgwardenError):
            time.sleep(2.0 * (attempt + 1))
    return 1


if __name__ == "__main__":
    sys.exit(main())
