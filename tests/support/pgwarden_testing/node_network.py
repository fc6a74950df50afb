"""The local cluster's Pod network, as hack/node_env.sh chose it for a state directory: the bridge, and the
bridge's own address where Pods reach the API server and this machine's PostgreSQL and MinIO.

Explicit PGWARDEN_NODE_BRIDGE / PGWARDEN_NODE_SUBNET_PREFIX win, as they do in the scripts; otherwise the
values cluster-up recorded in `<state directory>/network`. Never derived here: one source of truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NETWORK_FILE = "network"
NETWORK_KEYS = ("PGWARDEN_NODE_BRIDGE", "PGWARDEN_NODE_SUBNET_PREFIX")


@dataclass(frozen=True)
class NodeNetwork:
    bridge: str
    subnet_prefix: str  # a.b.c of the bridge's /24

    @property
    def gateway(self) -> str:
        """The bridge's own address (.1)."""
        return f"{self.subnet_prefix}.1"


def node_network(local_dir: Path) -> NodeNetwork:
    """The network of the cluster whose state lives in `local_dir` (a checkout's .local, or .local/demo)."""
    recorded: dict[str, str] = {}
    path = local_dir / NETWORK_FILE
    if path.exists():
        recorded = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    values = {key: os.environ.get(key) or recorded.get(key) for key in NETWORK_KEYS}
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise RuntimeError(
            f"no {' or '.join(missing)}: start the cluster first (hack/cluster-up.sh records them in {path})"
            " or set them"
        )
    return NodeNetwork(str(values["PGWARDEN_NODE_BRIDGE"]), str(values["PGWARDEN_NODE_SUBNET_PREFIX"]))
