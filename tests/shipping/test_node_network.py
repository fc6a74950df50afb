"""Each cluster state directory gets a bridge and subnet of its own (hack/node_env.sh), so two checkouts on
one machine never share one: read the way the scripts read it (bash sourcing node_env.sh), and the way the
tests and the demo read it (pgwarden_testing.node_network), which must agree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pgwarden_testing.node_network import node_network

REPO = Path(__file__).resolve().parents[2]
EXPLICIT = ("PGWARDEN_NODE_BRIDGE", "PGWARDEN_NODE_SUBNET_PREFIX")


def node_env(local_dir: Path, then: str = ":", **env: str) -> tuple[str, str]:
    """(bridge, subnet prefix) as hack/node_env.sh chooses them for `local_dir`; `then` runs after it is
    sourced (to stand in for the machine's other devices, or to record the choice) and may set `subnet`."""
    script = f'set -euo pipefail; source hack/node_env.sh; {then}; echo "$bridge ${{subnet:-$subnet_prefix}}"'
    base = {k: v for k, v in os.environ.items() if k not in EXPLICIT}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={**base, "PGWARDEN_LOCAL_DIR": str(local_dir), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    bridge, prefix = done.stdout.split()
    return bridge, prefix


def test_two_checkouts_get_different_bridges_and_subnets(tmp_path: Path) -> None:
    one = node_env(tmp_path / "checkout-a" / ".local")
    other = node_env(tmp_path / "checkout-b" / ".local")

    assert one[0] != other[0] and one[1] != other[1], (one, other)
    for bridge, prefix in (one, other):
        assert len(bridge) <= 15, f"{bridge} is too long for a Linux interface name"
        assert prefix.startswith("10.217.") and 16 <= int(prefix.rsplit(".", 1)[1]) <= 255, prefix


def test_the_same_directory_always_gets_the_same_choice(tmp_path: Path) -> None:
    assert node_env(tmp_path / ".local") == node_env(tmp_path / ".local")


def test_a_subnet_another_device_uses_is_skipped(tmp_path: Path) -> None:
    bridge, first = node_env(tmp_path / ".local")
    # The machine's other devices, as `ip` lists them, now include one in the first choice.
    taken = f'subnets_in_use() {{ echo {first}; }}; subnet=$(derived_subnet "$bridge" "$path_hash")'

    assert node_env(tmp_path / ".local", then=taken) == (
        bridge,
        f"10.217.{int(first.split('.')[2]) % 255 + 1}",
    )


def following(prefix: str) -> str:
    """The next subnet node_env.sh tries after `prefix` (16..255, wrapping)."""
    return f"10.217.{16 + (int(prefix.rsplit('.', 1)[1]) - 15) % 240}"


def test_what_cluster_up_records_is_what_the_scripts_and_the_tests_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / ".local"
    for key in EXPLICIT:
        monkeypatch.delenv(key, raising=False)
    chosen = node_env(local, then="record_network")
    recorded = node_network(local)
    assert (recorded.bridge, recorded.subnet_prefix) == chosen

    # Once recorded, the record is what everyone reads, whatever a fresh derivation would say.
    (local / "network").write_text("PGWARDEN_NODE_BRIDGE=pgw-mine\nPGWARDEN_NODE_SUBNET_PREFIX=10.217.99\n")
    assert node_env(local) == ("pgw-mine", "10.217.99")
    network = node_network(local)
    assert (network.bridge, network.gateway) == ("pgw-mine", "10.217.99.1")


def test_explicit_values_win_over_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / ".local"
    local.mkdir()
    (local / "network").write_text("PGWARDEN_NODE_BRIDGE=pgw-mine\nPGWARDEN_NODE_SUBNET_PREFIX=10.217.99\n")
    explicit = {"PGWARDEN_NODE_BRIDGE": "pgw7", "PGWARDEN_NODE_SUBNET_PREFIX": "10.99.7"}

    assert node_env(local, **explicit) == ("pgw7", "10.99.7")
    for key, value in explicit.items():
        monkeypatch.setenv(key, value)
    assert node_network(local).gateway == "10.99.7.1"
