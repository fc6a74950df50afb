"""Sealed backups (`backup --encrypt-to`, `restore --identity`) fed hostile keys: a secret key given where a
public one belongs, an identity file that is not text. Each is refused with exit 2 before anything is stored,
created or changed, and no secret key is ever printed. (A sealed backup killed mid-upload is a phase of
test_backup_faults.py: nothing listed, a rerun converges.)
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pgwarden_testing.localpg import LocalPostgres
from pyrage import x25519

from cli.helpers import execute, table_counts
from faults import (
    Place,
    assert_no_secret,
    databases,
    filesystem_place,
    json_report,
    run_pgwarden,
)

SEED = """
CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 200) g;
"""


@pytest.fixture
def shop(canary_pg: LocalPostgres) -> str:
    url = canary_pg.create_database()
    execute(url, SEED)
    return url


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return filesystem_place(tmp_path / "backups")


def test_a_secret_key_given_as_recipient_is_refused_without_printing_it_and_nothing_is_stored(
    shop: str, canary_pg: LocalPostgres, place: Place
) -> None:
    """The likeliest slip with age: passing the identity (the secret key) instead of its public key. Its
    text must not reach stdout, stderr or a Job's termination message."""
    identity = str(x25519.Identity.generate())

    done = run_pgwarden("backup", shop, "--to", place.uri, "--encrypt-to", identity, "--json")

    assert done.returncode == 2, done.stdout + done.stderr
    message = json_report(done)["error"]["message"]
    assert "public key" in message, message
    assert_no_secret(identity, done.stdout, done.stderr)
    assert_no_secret(identity.lower(), done.stdout.lower(), done.stderr.lower())
    assert_no_secret(canary_pg.password, done.stdout, done.stderr)
    assert place.keys() == [] and place.pending() == []


def test_an_identity_file_that_is_not_text_is_refused_with_exit_2_and_nothing_is_created(
    shop: str, canary_pg: LocalPostgres, place: Place, tmp_path: Path
) -> None:
    identity = x25519.Identity.generate()
    sealed = run_pgwarden(
        "backup", shop, "--to", place.uri, "--encrypt-to", str(identity.to_public()), "--json"
    )
    assert sealed.returncode == 0, sealed.stderr
    hostile = tmp_path / "identity.bin"
    hostile.write_bytes(b"\xff\xfe\x00AGE-SECRET-KEY-1\x80\x81" + secrets.token_bytes(64))
    counts = table_counts(shop)
    name = f"r_{secrets.token_hex(4)}"

    for args in (
        ("restore", canary_pg.url(name), "--from", place.uri, "--create"),
        ("restore", shop, "--from", place.uri, "--clean", "--terminate-connections"),
        ("verify-backup", place.uri, "--on", canary_pg.url()),
    ):
        done = run_pgwarden(*args, "--identity", hostile, "--json")
        output = done.stdout + done.stderr
        assert done.returncode == 2, f"{args[0]}: exit {done.returncode}\n{output}"
        assert "unexpected error" not in output, output
        assert str(hostile) in json_report(done)["error"]["message"], output
        assert_no_secret(canary_pg.password, done.stdout, done.stderr)

    assert name not in databases(canary_pg.url())
    assert not [d for d in databases(canary_pg.url()) if "_pgw_drill_" in d]
    assert table_counts(shop) == counts
    assert [b["verified"] for b in place.listed()] == [False]
