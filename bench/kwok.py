"""Fake nodes for the operator benches: kwok (sigs.k8s.io/kwok, built by hack/build-kwok.sh) keeps Node
objects alive and moves the Pods scheduled onto them through Running to Succeeded, with no container, so
thousands of Jobs run through the real API server, scheduler and Job controller.

The nodes carry the label NODE_LABEL and the taint kwok's own docs use, so only Pods that ask for them
(`job_template()`: a node selector and a toleration) land there; the real node's Pods never do. Every
address kwok writes stays on this machine: the nodes' 127.0.0.1, Pod IPs from 127.0.100.0/24.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NODE_LABEL = {"pgwarden.io/bench-node": "kwok"}
TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
# kwok's own Stages, read from its module: a node turns Ready and keeps its Lease; a Pod turns Ready, a Job's
# Pod Succeeds at once, and a deleted Pod goes.
STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def job_template() -> dict[str, Any]:
    """What a resource's spec.jobTemplate needs for its Pods to run on the fake nodes."""
    toleration = {
        "key": TAINT["key"],
        "operator": "Equal",
        "value": TAINT["value"],
        "effect": TAINT["effect"],
    }
    return {"nodeSelector": dict(NODE_LABEL), "tolerations": [toleration]}


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {**NODE_LABEL, "type": "kwok", "kubernetes.io/hostname": name},
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"taints": [TAINT]},
    }


def _build(*args: str) -> str:
    out = subprocess.run(
        [str(REPO / "hack" / "build-kwok.sh"), *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"hack/build-kwok.sh {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def config(path: Path) -> Path:
    """kwok's configuration: the Stages above, from the module hack/build-kwok.sh built."""
    stages = Path(_build("--stages"))
    path.write_text("\n---\n".join((stages / stage).read_text().strip() for stage in STAGES) + "\n")
    return path


@contextlib.contextmanager
def fake_nodes(
    kubectl: Callable[..., str], kubeconfig: Path, state: Path, count: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """kwok running against the cluster with `count` fake nodes; both gone afterwards."""
    binary = _build()
    state.mkdir(parents=True, exist_ok=True)
    names = [f"kwok-bench-{index}" for index in range(count)]
    items = [node(name) for name in names]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    with (state / "kwok.log").open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                "--kubeconfig",
                str(kubeconfig),
                "--config",
                str(config(state / "kwok.yaml")),
                "--manage-nodes-with-label-selector",
                ",".join(f"{key}={value}" for key, value in NODE_LABEL.items()),
                "--node-ip",
                "127.0.0.1",
                "--cidr",
                "127.0.100.0/24",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        kubectl("delete", "node", *names, "--wait=false")
