"""What the end-to-end tests share: the operator under test, its fixtures, and helpers to apply resources and
wait for their status, Events and metrics (fixtures are registered by tests/cluster/conftest.py).

The operator runs as `pgwarden operator` in a subprocess with only `--kubeconfig` (no KUBECONFIG), whose
token is the chart's ServiceAccount's, bound by the chart's own namespaced Role (helm template, not admin),
so the tests also prove that Role is all it needs. The CRDs are installed as crds/ holds them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from chart_support import (
    ToolError,
    namespaced_rbac_settings,
    operator_rbac,
    render_chart,
    run_build,
    service_account_name,
)

from pgwarden.testing import s3server
from pgwarden.testing.localpg import free_port

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster


Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
TERMINAL = ("Succeeded", "Failed", "RolledBack")


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return run_build("build-helm.sh", timeout=1700)
    except ToolError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def crds(kube: LocalCluster) -> None:
    kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pgwarden-tests",
        "-f",
        str(REPO / "crds"),
    )
    for plural in ("databasemigrations", "databasebackups", "databaserestores"):
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.pgwarden.io")


@dataclass
class Operator:
    """`pgwarden operator` for one namespace, as a process the test can kill and restart."""

    kube: LocalCluster
    namespace: str
    kubeconfig: Path
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No KUBECONFIG: `--kubeconfig` alone must be enough for kopf's login and our client.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "AWS_", "KUBE")) and k != "DATABASE_URL"
        }
        env.update(PGWARDEN_TIMER_INTERVAL="2")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PGWARDEN,
                    "operator",
                    "--namespace",
                    self.namespace,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--job-image",
                    "pgwarden:e2e",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--liveness-port",
                    str(self.liveness_port),
                    "--workers",
                    "4",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture
def operator(
    kube: LocalCluster, namespace: str, crds: None, helm: Path, tmp_path: Path
) -> Iterator[Operator]:
    """The operator under the chart's RBAC for this namespace: its ServiceAccount, Role and RoleBinding."""
    manifests = render_chart(helm, *namespaced_rbac_settings(namespace), namespace=namespace)
    rbac = operator_rbac(manifests)
    assert [m["kind"] for m in rbac] == ["ServiceAccount", "Role", "RoleBinding"], rbac
    kube.apply(*rbac)
    kubeconfig = kube.service_account_kubeconfig(
        namespace, service_account_name(manifests), tmp_path / "operator.kubeconfig"
    )
    process = Operator(kube, namespace, kubeconfig, tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(f"--- operator log ({namespace}) ---\n{process.log()[-6000:]}")


# -- helpers ------------------------------------------------------------------------------------


def in_namespace(namespace: str, *manifests: Obj) -> list[Obj]:
    return [dict(m, metadata=dict(m["metadata"], namespace=namespace)) for m in manifests]


def secret(name: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def resource(kind: str, name: str, spec: Obj, **metadata: Any) -> Obj:
    return {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def s3_storage(s3: s3server.S3Server, bucket: str, prefix: str, credentials: str = "s3-credentials") -> Obj:
    return {
        "s3": {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint": s3.endpoint,
            "region": s3server.REGION,
            "forcePathStyle": True,
            "credentialsSecretRef": {"name": credentials},
        }
    }


def s3_secret(s3: s3server.S3Server) -> Obj:
    return secret("s3-credentials", AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)


def status_of(kube: LocalCluster, kind: str, name: str, namespace: str) -> Obj:
    return dict(kube.get(kind, name, namespace).get("status") or {})


def wait_status(
    kube: LocalCluster, op: Operator, kind: str, name: str, ready: Callable[[Obj], bool], timeout: float = 150
) -> Obj:
    def probe() -> Obj | None:
        status = status_of(kube, kind, name, op.namespace)
        return status if ready(status) else None

    try:
        return kube.wait_for(f"{kind}/{name} status", probe, timeout=timeout, interval=1)
    except AssertionError as error:
        last = status_of(kube, kind, name, op.namespace)
        raise AssertionError(
            f"{error}\nstatus: {json.dumps(last, indent=1)}\noperator log:\n{op.log()[-4000:]}\n"
            f"node agent:\n{kube.node_agent_log(30)}"
        ) from error


def events(kube: LocalCluster, namespace: str, name: str) -> list[Obj]:
    items = kube.get_all("events", namespace)
    return [e for e in items if e["involvedObject"].get("name") == name]


def condition(status: Obj, kind: str) -> Obj:
    found = next((c for c in status.get("conditions", []) if c["type"] == kind), None)
    assert found is not None, (kind, status)
    return dict(found)


def assert_never_shown(kube: LocalCluster, op: Operator, *secrets: str) -> None:
    """No Secret value in any resource's status, any Event, or the operator's log."""
    texts = [op.log(), json.dumps(kube.get_all("events", op.namespace))]
    for plural in ("databasemigrations", "databasebackups", "databaserestores"):
        texts.append(json.dumps([item.get("status") for item in kube.get_all(plural, op.namespace)]))
    for value in secrets:
        for text in texts:
            assert value not in text


def seed(url: str, rows: int = 250) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers)")
        conn.execute(f"INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, {rows}) g")
        conn.execute(f"INSERT INTO orders SELECT g, 1 + g % {rows} FROM generate_series(1, {2 * rows}) g")


# -- tests --------------------------------------------------------------------------------------


def migrations_configmap(name: str, files: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": files}


def condition_reason(status: Obj) -> str | None:
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    return ready["reason"] if ready else None


def cronjob_of(kube: LocalCluster, namespace: str) -> Obj | None:
    cronjobs = kube.get_all("cronjobs", namespace)
    return cronjobs[0] if cronjobs else None
