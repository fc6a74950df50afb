"""What the end-to-end tests share: the operator under test, its fixtures, and helpers to apply resources and
wait for their status, Events and metrics (fixtures are registered by tests/cluster/conftest.py).

The operator runs as users run it: `helm install` of the chart in the test's namespace (namespaced RBAC,
the chart's ServiceAccount, so the tests also prove that Role is all it needs), its Deployment's Pod and
every Job's Pod running pgwarden's image on the real node. The CRDs are installed as crds/ holds them.
Pods reach this machine's PostgreSQL and MinIO at the bridge's address: `secret` writes that address
where a value names 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from chart_support import (
    CHART,
    ToolError,
    local_values,
    run_build,
)
from pgwarden_testing import s3server
from pgwarden_testing.node_network import node_network

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster


Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
# runc's state of the node's containers (hack/node-up.sh): where a test kills a container's process.
RUNC_ROOT = REPO / ".local" / "node" / "containerd" / "runc" / "k8s.io"
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
    for plural in (
        "databasemigrations",
        "databasebackups",
        "databaserestores",
        "databasemigrationsets",
        "databasebackupsets",
    ):
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.pgwarden.io")


@dataclass
class ChartOperator:
    """The chart's operator Deployment in one namespace, installed with `helm install` and running from
    pgwarden's image on the node; stopped and started by scaling it, killed with SIGKILL through runc.

    Its logs are kept across restarts (a Pod's log goes with the Pod); its metrics and /healthz are
    read from the Pod's own address, which this machine reaches on the bridge.
    """

    kube: LocalCluster
    namespace: str
    helm: Path
    values: Path
    log_path: Path
    release: str = "pgwarden"
    replicas: int = 1
    metrics_port: int = 9090
    liveness_port: int = 8080

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/name=pgwarden,app.kubernetes.io/instance={self.release}"

    def install(self) -> None:
        """`helm install` as a user would (the CRDs are the tests' to apply), then wait until it is live."""
        result = subprocess.run(
            [
                str(self.helm),
                "install",
                self.release,
                str(CHART),
                "--namespace",
                self.namespace,
                "--kubeconfig",
                str(self.kube.kubeconfig),
                "--skip-crds",
                "--values",
                str(self.values),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"helm install failed:\n{result.stdout}{result.stderr}"
        self.wait_live()
        if self.replicas > 1:
            self.kube.wait_for(
                f"{self.replicas} operator Pods running",
                lambda: len(self.pods()) >= self.replicas,
                timeout=90,
            )

    def pods(self) -> list[Obj]:
        """The operator's running Pods (not those being deleted)."""
        pods = self.kube.get_all("pods", self.namespace, "-l", self.selector)
        return [
            p
            for p in pods
            if p["metadata"].get("deletionTimestamp") is None
            and p.get("status", {}).get("phase") == "Running"
        ]

    def pod(self) -> Obj | None:
        """The operator's running Pod (the first, with several replicas), if any."""
        running = self.pods()
        return running[0] if running else None

    def wait_live(self, timeout: float = 90) -> None:
        def live() -> bool:
            try:
                return bool(self.http(self.liveness_port, "/healthz"))
            except (OSError, AssertionError):
                return False

        try:
            self.kube.wait_for("the operator's /healthz", live, timeout=timeout, interval=0.5)
        except AssertionError as error:
            described = self.kube.kubectl(
                "describe", "pods", "-n", self.namespace, "-l", self.selector, check=False
            )
            raise AssertionError(
                f"{error}\n{described.stdout}\noperator log:\n{self.log()[-4000:]}"
            ) from error

    def _scale(self, replicas: int) -> None:
        self.kube.kubectl("scale", "deployment", self.release, "-n", self.namespace, f"--replicas={replicas}")

    def start(self) -> None:
        self._scale(1)
        self.wait_live()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: scale to zero and wait for the Pod to go (the kubelet stops it gracefully).
        SIGKILL: kill the container's process through runc first, so nothing of it runs on."""
        pod = self.pod()
        if pod is None:
            return
        self._keep_log(pod)
        if sig == signal.SIGKILL:
            _kill_container(pod)
        self._scale(0)
        self.kube.wait_for(
            "the operator's Pod to go",
            lambda: not self.kube.get_all("pods", self.namespace, "-l", self.selector),
            timeout=60,
        )

    def kill_pod(self, name: str) -> None:
        """kill -9 one replica's container through runc, then delete its Pod at once: the replica is gone
        for good (a container restarted in the same Pod would come back under the same Lease identity)."""
        (pod,) = [p for p in self.pods() if p["metadata"]["name"] == name]
        self._keep_log(pod)
        _kill_container(pod)
        self.kube.kubectl(
            "delete", "pod", name, "-n", self.namespace, "--grace-period=0", "--force", "--wait=false"
        )

    def pod_log(self, name: str) -> str:
        """What one replica logged so far."""
        return self.kube.kubectl("logs", name, "-n", self.namespace, check=False).stdout

    def _keep_log(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        logs = self.kube.kubectl("logs", name, "-n", self.namespace, check=False).stdout
        with self.log_path.open("a") as saved:
            saved.write(logs)

    def log(self) -> str:
        """Everything the operator logged in this test, across its restarts and replicas."""
        earlier = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return earlier + "".join(self.pod_log(p["metadata"]["name"]) for p in self.pods())

    def http(self, port: int, path: str) -> str:
        pod = self.pod()
        assert pod is not None and pod["status"].get("podIP"), f"no running operator Pod in {self.namespace}"
        url = f"http://{pod['status']['podIP']}:{port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


def _kill_container(pod: Obj) -> None:
    """kill -9 the Pod's operator container through runc: nothing of it runs on, nothing is released."""
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    subprocess.run(
        ["runc", "--root", str(RUNC_ROOT), "kill", container, "KILL"],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def operator(
    kube: LocalCluster,
    namespace: str,
    crds: None,
    helm: Path,
    tmp_path: Path,
) -> Iterator[ChartOperator]:
    """The operator as users run it: the chart installed in this namespace with namespaced RBAC (its
    ServiceAccount, Role and RoleBinding), from pgwarden's image on the node."""
    yield from chart_operator(kube, namespace, helm, tmp_path)


def chart_operator(
    kube: LocalCluster,
    namespace: str,
    helm: Path,
    tmp_path: Path,
    replicas: int = 1,
    extra: Obj | None = None,
) -> Iterator[ChartOperator]:
    """Install the chart with `replicaCount: replicas` (and `extra` values), yield it, print its log and
    uninstall it."""
    values = tmp_path / "values.json"
    values.write_text(
        json.dumps(
            {**local_values(kube.image, namespace, kube.apiserver), "replicaCount": replicas, **(extra or {})}
        )
    )
    operator = ChartOperator(kube, namespace, helm, values, tmp_path / "operator.log", replicas=replicas)
    operator.install()
    try:
        yield operator
    finally:
        print(f"--- operator log ({namespace}) ---\n{operator.log()[-6000:]}")
        subprocess.run(
            [
                str(helm),
                "uninstall",
                operator.release,
                "-n",
                namespace,
                "--kubeconfig",
                str(kube.kubeconfig),
                "--wait=false",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )


# -- helpers ------------------------------------------------------------------------------------


def run_jobs(kube: LocalCluster, namespace: str) -> list[Obj]:
    """The Jobs that run something: all but the read-only previews of Manual migrations awaiting approval."""
    return [job for job in kube.get_all("jobs", namespace) if "-preview-" not in job["metadata"]["name"]]


def in_namespace(namespace: str, *manifests: Obj) -> list[Obj]:
    return [dict(m, metadata=dict(m["metadata"], namespace=namespace)) for m in manifests]


def secret(name: str, **data: str) -> Obj:
    """A Secret for Pods: a value naming 127.0.0.1 (a test server's URL) names the bridge's address instead."""
    gateway = node_network(REPO / ".local").gateway  # the Pod bridge's own address
    for_pods = {key: value.replace("127.0.0.1", gateway) for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": for_pods}


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
    kube: LocalCluster,
    op: ChartOperator,
    kind: str,
    name: str,
    ready: Callable[[Obj], bool],
    timeout: float = 150,
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
            f"kubelet:\n{kube.node_log(30)}"
        ) from error


def events(kube: LocalCluster, namespace: str, name: str) -> list[Obj]:
    items = kube.get_all("events", namespace)
    return [e for e in items if e["involvedObject"].get("name") == name]


def condition(status: Obj, kind: str) -> Obj:
    found = next((c for c in status.get("conditions", []) if c["type"] == kind), None)
    assert found is not None, (kind, status)
    return dict(found)


def assert_never_shown(kube: LocalCluster, op: ChartOperator, *secrets: str) -> None:
    """No Secret value in any resource's status, any Event, or the operator's log."""
    texts = [op.log(), json.dumps(kube.get_all("events", op.namespace))]
    plurals = (
        "databasemigrations",
        "databasebackups",
        "databaserestores",
        "databasemigrationsets",
        "databasebackupsets",
    )
    for plural in plurals:
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
