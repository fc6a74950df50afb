"""The command line without Kubernetes: a local PostgreSQL and the example migrations: inspect, plan, migrate,
fail and roll back. Run it with `.venv/bin/python hack/demo_cli.py` (`make demo` shows the operator)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pgwarden_testing import localpg

from pgwarden.redact import redact

ROOT = Path(__file__).resolve().parent.parent
DEMO_MIGRATIONS = ROOT / "migrations" / "demo"
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))

BROKEN_MIGRATION = """\
-- A migration that goes wrong half-way: the new table is created, then a typo fails the run.
CREATE TABLE shop.audit_log (id bigserial PRIMARY KEY, happened_at timestamptz NOT NULL DEFAULT now());
INSERT INTO shop.audit_log (happened_at) SELECT now() FROM shop.customers;
ALTER TABLE shop.orders ADD COLUMN audited boolean NOT NULL DEFAULT false;
UPDATE shop.orders SET audited = true WHERE id IN (SELECT id FROM shop.ordres);
"""


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def pgwarden(*args: str) -> int:
    print(f"$ pgwarden {redact(' '.join(args))}", flush=True)
    return subprocess.run([PGWARDEN, *args], check=False).returncode


def main() -> int:
    banner("starting a local PostgreSQL (embedded, no root, no system package)")
    with localpg.running() as server:
        url = server.create_database("shop")
        print(f"PostgreSQL {server.version} on 127.0.0.1:{server.port}, database {redact(url)}")

        banner("inspect the empty database")
        pgwarden("inspect", url)

        banner("the plan for migrations/demo (changes nothing)")
        pgwarden("migrate", url, "--dir", str(DEMO_MIGRATIONS), "--plan")

        banner(
            "migrate: one transaction, split only around CREATE INDEX CONCURRENTLY, verified before COMMIT"
        )
        pgwarden("migrate", url, "--dir", str(DEMO_MIGRATIONS))

        banner("inspect after the migration")
        pgwarden("inspect", url)

        banner("a migration that fails half-way is rolled back: nothing lost, nothing left behind")
        with tempfile.TemporaryDirectory() as tmp:
            broken = Path(tmp)
            for path in DEMO_MIGRATIONS.glob("*.sql"):
                shutil.copy(path, broken / path.name)
            (broken / "0100_audit_log.sql").write_text(BROKEN_MIGRATION)
            code = pgwarden("migrate", url, "--dir", str(broken))
            print(f"(exit code {code}: the run failed and was rolled back)")

        banner("the database is exactly as it was")
        pgwarden("migrate", url, "--dir", str(DEMO_MIGRATIONS), "--json")
    print("\ndemo finished; the server was stopped and removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
