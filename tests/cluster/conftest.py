"""Fixtures for tests against the local Kubernetes cluster (hack/cluster-up.sh): the control plane and a
real node (containerd, runc, the kubelet) that runs pgwarden's image.

Every xdist worker of one run shares one cluster. The first worker that needs it starts it under a file
lock; the last one to finish stops it, if this run started it, and a watchdog stops it should the run die
first. A cluster someone started by hand (`make cluster-up`) is used and left up. Pods reach this
machine's servers at the bridge's address (hack/node_env.sh chooses the bridge and subnet per checkout), so a
test's PostgreSQL and MinIO listen there too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / ".local"
KUBECONFIG = LOCAL / "kubeconfig"
CLUSTER_DIR = LOCAL / "cluster"
NODE_DIR = LOCAL / "node"
USERS_FILE = LOCAL / "cluster-tests.json"
LOCK_FILE = LOCAL / "cluster-tests.lock"
T = TypeVar("T")

# Set by pytest_collection_finish when building the binaries failed: the fixture then fails loudly.
_build_error: list[str] = []
_bin_dir: list[Path] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.cluster)


# What the cluster needs built, each once per version or content hash (cached in ~/.cache/pgwarden).
BUILDS = (
    ("build-k8s.sh",),
    ("build-k8s.sh", "--node"),
    ("build-helm.sh",),
    ("build-prometheus.sh",),
    ("build-image.sh",),
    ("build-pause.sh",),
)
# Argo CD is built only when a collected test syncs through it (the `argocd` fixture).
ARGOCD_BUILD = ("build-argocd.sh",)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Kubernetes, helm and the images before any test runs, so a first build meets no test timeout."""
    if not any(item.get_closest_marker("cluster") for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # A first build takes many minutes: show its progress lines rather than look hung.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        uses_argocd = any("argocd" in getattr(item, "fixturenames", ()) for item in session.items)
        for script, *args in BUILDS + ((ARGOCD_BUILD,) if uses_argocd else ()):
            started = time.monotonic()
            progress: list[str] = []
            build = subprocess.Popen(
                [str(REPO / "hack" / script), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert build.stderr is not None
            for line in build.stderr:
                progress.append(line)
                sys.stderr.write(line)
            stdout = build.communicate()[0]
            if build.returncode != 0:
                _build_error.append(
                    f"hack/{script} {' '.join(args)} failed (exit {build.returncode}) after "
                    f"{time.monotonic() - started:.0f}s:\n" + "".join(progress)[-4000:]
                )
                return
            if script == "build-k8s.sh" and not args:
                _bin_dir.append(Path(stdout.strip().splitlines()[-1]))


@dataclasses.dataclass(frozen=True)
class LocalCluster:
    """The running cluster: its admin kubeconfig, kubectl, API clients, the image its node holds and the
    addresses Pods reach the API server and this machine's servers at."""

    kubeconfig: Path
    bin_dir: Path
    image: str = ""
    apiserver: tuple[str, int] = ("127.0.0.1", 0)

    @property
    def pod_gateway(self) -> str:
        """The bridge's own address: where Pods reach the API server, PostgreSQL and MinIO."""
        return self.apiserver[0]

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with check, a non-zero exit fails with its output."""
        command = [str(self.kubectl_path), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        )

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))

    def get_all(self, kind: str, namespace: str, *selector: str) -> list[dict[str, Any]]:
        output = self.kubectl("get", kind, "-n", namespace, *selector, "-o", "json").stdout
        return list(json.loads(output)["items"])

    def api_client(self, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
        """A fresh `kubernetes` ApiClient for this cluster (admin unless another kubeconfig is given)."""
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig), client_configuration=configuration
        )
        return kubernetes.client.ApiClient(configuration)

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path, duration: str = "1h") -> Path:
        """Mint a token for ServiceAccount namespace/name (TokenRequest API) and write a kubeconfig using it.

        The account is created when missing; what it may do is up to the test's Roles and bindings.
        """
        self.kubectl("create", "serviceaccount", name, "-n", namespace, check=False)
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration", duration).stdout.strip()
        admin = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": f"{namespace}:{name}", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "local",
                    "context": {"cluster": "local", "user": f"{namespace}:{name}", "namespace": namespace},
                }
            ],
            "current-context": "local",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def wait_for(
        self, what: str, probe: Callable[[], T | None], timeout: float = 90, interval: float = 0.5
    ) -> T:
        """Poll until probe returns something truthy; after `timeout` seconds fail with `what`, the pods
        and the kubelet's log, which usually say why."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False)
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {what}\n"
                    f"pods:\n{pods.stdout}{pods.stderr}\nkubelet log:\n{self.node_log(30)}"
                )
            time.sleep(interval)

    def node_log(self, lines: int = 60) -> str:
        """The end of the kubelet's log (why a Pod does not start)."""
        try:
            return "\n".join((NODE_DIR / "kubelet.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def _locked() -> Iterator[None]:
    LOCAL.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_users() -> dict[str, Any]:
    try:
        state = dict(json.loads(USERS_FILE.read_text()))
    except (OSError, ValueError):
        return {"owned": False, "users": []}
    state["users"] = [pid for pid in state.get("users", []) if _alive(pid)]
    return state


def _alive(pid: int) -> bool:
    """Whether the process runs: a zombie has exited, though kill(pid, 0) still finds it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _run_script(name: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "hack" / name)], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )


def _start_watchdog(owner: int) -> None:
    """Stop the cluster once the pytest run that started it is gone, however it ended."""
    script = f"""
import fcntl, json, os, subprocess, time
owner, lock_file, users_file = {owner}, {str(LOCK_FILE)!r}, {str(USERS_FILE)!r}
def alive(pid):
    try:
        return open(f"/proc/{{pid}}/stat").read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
while alive(owner):
    time.sleep(0.5)
with open(lock_file, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        state = json.load(open(users_file))
    except (OSError, ValueError):
        state = {{}}
    # Only the cluster this run started (a later run may have started its own since), and only
    # when no other pytest run still uses it (the last of them stops it then).
    users = [pid for pid in state.get("users", []) if alive(pid)]
    if state.get("owned") and state.get("owner") == owner and not users:
        subprocess.run([{str(REPO / "hack" / "cluster-down.sh")!r}], capture_output=True, check=False)
        os.unlink(users_file)
"""
    subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def kube() -> Iterator[LocalCluster]:
    """The shared local cluster with its node, started on first use."""
    if _build_error:
        pytest.fail(_build_error[0], pytrace=False)
    # The pytest process whose end means "stop": xdist's controller (our parent) or this process.
    owner = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
    with _locked():
        state = _read_users()
        result = _run_script("cluster-up.sh", timeout=1800)
        if result.returncode != 0:
            pytest.fail(
                f"hack/cluster-up.sh failed (exit {result.returncode}):\n{result.stdout}{result.stderr[-4000:]}",
                pytrace=False,
            )
        if "cluster ready in" in result.stdout:  # this run started it, so this run stops it
            state = {"owned": True, "users": [], "owner": owner}
            _start_watchdog(owner)
        state["users"].append(os.getpid())
        USERS_FILE.write_text(json.dumps(state))
    bin_dir = (
        _bin_dir[0] if _bin_dir else Path(_run_script("build-k8s.sh", 60).stdout.strip().splitlines()[-1])
    )
    # This run's image: cluster-up loads the one of the current sources (another run may load a newer one).
    image = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("image "))
    env = dict(line.split("=", 1) for line in (CLUSTER_DIR / "env").read_text().splitlines() if "=" in line)
    apiserver = (env["PGWARDEN_APISERVER_HOST"], int(env["PGWARDEN_APISERVER_PORT"]))
    try:
        yield LocalCluster(KUBECONFIG, bin_dir, image, apiserver)
    finally:
        with _locked():
            state = _read_users()
            state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
            if state["users"] or not state.get("owned"):
                if state["users"]:
                    USERS_FILE.write_text(json.dumps(state))
                else:
                    USERS_FILE.unlink(missing_ok=True)
            else:
                down = _run_script("cluster-down.sh", timeout=120)
                USERS_FILE.unlink(missing_ok=True)
                if down.returncode != 0:
                    raise AssertionError(f"hack/cluster-down.sh failed:\n{down.stdout}{down.stderr}")


@pytest.fixture
def namespace(kube: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that admits only `restricted` Pods (every Pod pgwarden makes must pass), with its
    default ServiceAccount ready (Pods cannot be created before it)."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
    )
    kube.wait_for(
        f"the default ServiceAccount in {name}",
        lambda: kube.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
    )
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def _servers_reach_pods(request: pytest.FixtureRequest) -> None:
    """The test's PostgreSQL and MinIO listen on the bridge's address too, where its Pods reach them.

    Session servers may have started before the cluster (another test of this worker needed them first),
    so they are moved onto the bridge here, once, rather than when they start.
    """
    wanted = [name for name in ("pg", "s3") if name in request.fixturenames]
    if not wanted:
        return
    gateway = request.getfixturevalue("kube").pod_gateway
    for name in wanted:
        request.getfixturevalue(name).serve_pods(gateway)


# The end-to-end fixtures live with their helpers; importing them here makes them every test module's.
from operator_support import crds, helm, operator  # noqa: E402
from web_identity_support import oidc_s3  # noqa: E402

__all__ = ["LocalCluster", "crds", "helm", "oidc_s3", "operator"]
