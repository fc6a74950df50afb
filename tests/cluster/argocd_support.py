"""A real Argo CD beside the local cluster, for the tests that sync pgwarden resources from git.

hack/build-argocd.sh builds Argo CD's one binary from its Go module (cached per version); its application
controller and repo server run on this machine with `--kubeconfig`, as kube-apiserver does, with redis on
loopback and the test's git repository read through a file URL. The Application, AppProject and
ApplicationSet CRDs come from the Argo CD module's manifests/crds/ in the Go module cache, and argocd-cm
carries docs/argocd/health.lua, the very file users copy, for every pgwarden kind in crds/.

One Argo CD serves a test module (the `argocd` fixture); each test gets its own Application, named after
its namespace, whose source is a commit in the repository (`GitRepository.commit`). Its status (operation
state, sync result, per-resource health) is read from the Application through the API server.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from chart_support import ToolError, run_build

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "docs" / "argocd" / "health.lua"
# The destination Argo CD calls its own cluster; ARGOCD_FAKE_IN_CLUSTER maps it to --kubeconfig's.
IN_CLUSTER = "https://kubernetes.default.svc"
TERMINAL_OPERATION = ("Succeeded", "Failed", "Error")


def pgwarden_kinds() -> list[str]:
    """The kinds of pgwarden's CRDs (crds/): each gets the health check."""
    kinds = []
    for path in sorted((REPO / "crds").glob("pgwarden.io_*.yaml")):
        kinds.append(yaml.safe_load(path.read_text())["spec"]["names"]["kind"])
    return kinds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} (exit {process.poll()}):\n{tail}")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process dies, however it ends (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextmanager
def running(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own session, its output in `log`; SIGTERM it (then SIGKILL) when done, or
    when the test process dies first."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@dataclass
class GitRepository:
    """A git repository on this machine that Argo CD reads through a file URL: a test commits manifests
    into a folder of it and points an Application at the commit."""

    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def init(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("config", "user.name", "pgwarden tests")
        self.git("config", "user.email", "tests@pgwarden.invalid")

    def commit(self, folder: str, manifests: Sequence[Obj], message: str) -> str:
        """Make `folder` hold exactly these manifests (one file each) and commit: the commit's sha."""
        directory = self.path / folder
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for index, manifest in enumerate(manifests):
            name = f"{index:02d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"
            (directory / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
        self.git("add", "--all", folder)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@dataclass
class ArgoCD:
    """The running Argo CD: its namespace (Applications, argocd-cm), the repository it reads, its logs."""

    kube: LocalCluster
    namespace: str
    repository: GitRepository
    logs: Path

    def create_application(self, name: str, folder: str, destination: str, revision: str) -> None:
        """An Application for `folder` at `revision`, deploying into namespace `destination`; it syncs
        only when told (`sync`), as a user pressing Sync would."""
        self.kube.apply(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": self.repository.url, "path": folder, "targetRevision": revision},
                    "destination": {"server": IN_CLUSTER, "namespace": destination},
                },
            }
        )

    def sync(self, name: str, revision: str, *, prune: bool = False) -> None:
        """Point the Application at `revision` and start a sync of it, as `argocd app sync` does: by
        setting the Application's `operation`, which the application controller runs."""
        patch = {
            "spec": {"source": {"targetRevision": revision}},
            "operation": {
                "initiatedBy": {"username": "pgwarden-tests"},
                "sync": {"revision": revision, "prune": prune},
            },
        }
        self.kube.kubectl(
            "patch",
            "applications.argoproj.io",
            name,
            "-n",
            self.namespace,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )

    def application(self, name: str) -> Obj:
        return self.kube.get("applications.argoproj.io", name, self.namespace)

    def wait(self, name: str, what: str, probe: Callable[[Obj], bool], timeout: float = 120) -> Obj:
        """Poll the Application until probe(application) holds; on timeout fail with its status and the
        end of the controller's log."""
        try:
            return self.kube.wait_for(
                what,
                lambda: app if probe(app := self.application(name)) else None,
                timeout=timeout,
                interval=1,
            )
        except AssertionError as error:
            app = self.application(name)
            log = (self.logs / "application-controller.log").read_text(errors="replace")[-4000:]
            jobs = self.kube.kubectl(
                "logs",
                "-n",
                app["spec"]["destination"]["namespace"],
                "-l",
                "batch.kubernetes.io/job-name",
                "--prefix",
                "--tail=20",
                check=False,
            )
            raise AssertionError(
                f"{error}\nApplication status: {json.dumps(app.get('status', {}), indent=1)[-6000:]}\n"
                f"controller log:\n{log}\nJob logs:\n{jobs.stdout}{jobs.stderr}"
            ) from error

    def wait_for_sync(self, name: str, revision: str, timeout: float = 150) -> Obj:
        """Wait for the sync of `revision` to end; the Application, whatever the outcome."""
        return self.wait(
            name,
            f"the sync of {revision[:8]} to end",
            lambda app: (
                operation_of(app).get("phase") in TERMINAL_OPERATION
                and operation_of(app).get("syncResult", {}).get("revision") == revision
            ),
            timeout,
        )


def operation_of(app: Obj) -> Obj:
    return dict(app.get("status", {}).get("operationState") or {})


def sync_result(app: Obj, kind: str, name: str) -> Obj:
    """What the last sync did with one resource (applied, pruned, a hook's phase and message)."""
    results = operation_of(app).get("syncResult", {}).get("resources", [])
    found = [r for r in results if r["kind"] == kind and r["name"] == name]
    assert found, f"no {kind}/{name} in the sync result: {json.dumps(results, indent=1)}"
    return dict(found[-1])


def resource_status(app: Obj, kind: str, name: str) -> Obj | None:
    """The Application's record of one managed resource (sync status, health), if it has one."""
    for resource in app.get("status", {}).get("resources", []):
        if resource["kind"] == kind and resource["name"] == name:
            return dict(resource)
    return None


def health_of(app: Obj, kind: str, name: str) -> Obj:
    return dict((resource_status(app, kind, name) or {}).get("health") or {})


def status_excerpt(app: Obj) -> str:
    """What `argocd app get` shows of an Application, as YAML from its status: the health, the sync and
    its operation (what it did with each resource), and each managed resource's sync status and health."""
    status = app.get("status", {})
    operation = operation_of(app)
    excerpt = {
        "health": {"status": status.get("health", {}).get("status")},
        "sync": {"status": status.get("sync", {}).get("status")},
        "operationState": {
            "phase": operation.get("phase"),
            "message": operation.get("message"),
            "syncResult": {"resources": operation.get("syncResult", {}).get("resources", [])},
        },
        "resources": status.get("resources", []),
    }
    return yaml.safe_dump({"status": excerpt}, sort_keys=False, width=120)


def argocd_settings(namespace: str) -> list[Obj]:
    """argocd-cm with our health check for every pgwarden kind, argocd-secret (a key the settings need)
    and the default AppProject (the API server creates it in a full install; here nobody else would)."""
    health = HEALTH_LUA.read_text()
    part_of = {"app.kubernetes.io/part-of": "argocd"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": namespace, "labels": part_of},
            "data": {
                f"resource.customizations.health.pgwarden.io_{kind}": health for kind in pgwarden_kinds()
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": namespace, "labels": part_of},
            "stringData": {"server.secretkey": secrets.token_urlsafe(32)},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


def install_crds(kube: LocalCluster) -> None:
    """Argo CD's CRDs as its module has them (`hack/build-argocd.sh --crds` names the folder)."""
    crds = run_build("build-argocd.sh", args=("--crds",), timeout=600)
    for name in ("application-crd.yaml", "applicationset-crd.yaml", "appproject-crd.yaml"):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds / name))
    for plural in ("applications", "appprojects"):
        kube.wait_for(f"the {plural} CRD established", functools.partial(established, kube, plural))


def established(kube: LocalCluster, plural: str) -> bool:
    """Whether the API server serves Argo CD's CRD (not `kubectl wait`: it fails if asked before any condition)."""
    jsonpath = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
    return kube.kubectl("get", f"crd/{plural}.argoproj.io", "-o", jsonpath).stdout == "True"


@contextmanager
def argocd_running(kube: LocalCluster, bin_dir: Path, work: Path) -> Iterator[ArgoCD]:
    """Redis, the repo server and the application controller for one Argo CD namespace; stopped after."""
    install_crds(kube)
    namespace = f"argocd-{secrets.token_hex(3)}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        yield from _serve(kube, bin_dir, work, namespace)
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def flags(**values: object) -> list[str]:
    """Command-line flags: `repo_server="x"` is `--repo-server x`, True a bare flag."""
    found = []
    for name, value in values.items():
        found.append(f"--{name.replace('_', '-')}")
        if value is not True:
            found.append(str(value))
    return found


def _serve(kube: LocalCluster, bin_dir: Path, work: Path, namespace: str) -> Iterator[ArgoCD]:
    kube.apply(*argocd_settings(namespace))
    repository = GitRepository(work / "repository")
    repository.init()
    logs, tmp = work / "logs", work / "tmp"
    for folder in ("logs", "tls", "ssh", "gpg", "tmp"):
        (work / folder).mkdir(exist_ok=True)
    env = {
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        "KUBECONFIG": str(kube.kubeconfig),
        "ARGOCD_TLS_DATA_PATH": str(work / "tls"),
        "ARGOCD_SSH_DATA_PATH": str(work / "ssh"),
        "ARGOCD_GNUPGHOME": str(work / "gpg"),
        "ARGOCD_GPG_ENABLED": "false",
        "TMPDIR": str(tmp),
        # git-verify-wrapper.sh, which the repo server runs for every manifest generation, is beside it.
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    redis_port, repo_port = free_port(), free_port()
    redis = f"127.0.0.1:{redis_port}"
    with ExitStack() as stack:

        def serve(name: str, port: int, command: list[str]) -> None:
            log = logs / f"{name}.log"
            wait_for_port(port, name, stack.enter_context(running(command, log, env)), log, 60)

        serve(
            "redis", redis_port, ["redis-server", *flags(bind="127.0.0.1", port=redis_port, save="", dir=tmp)]
        )
        repo_server = flags(address="127.0.0.1", port=repo_port, redis=redis, loglevel="info")
        repo_server += flags(metrics_address="127.0.0.1", metrics_port=free_port())
        serve("repo-server", repo_port, [str(bin_dir / "argocd-repo-server"), *repo_server])
        # Resync every 10 s (the default is 2 minutes); per-resource health is written to the Application,
        # where the tests read it. Its metrics listen on every address (no flag says otherwise): port 0.
        controller = flags(kubeconfig=kube.kubeconfig, namespace=namespace, redis=redis)
        controller += flags(repo_server=f"127.0.0.1:{repo_port}", app_resync=10, app_resync_jitter=0)
        controller += flags(persist_resource_health=True, metrics_port=0, loglevel="info")
        log = logs / "application-controller.log"
        stack.enter_context(running([str(bin_dir / "argocd-application-controller"), *controller], log, env))
        try:
            yield ArgoCD(kube, namespace, repository, logs)
        finally:
            kube.kubectl(
                "delete", "applications.argoproj.io", "--all", "-n", namespace, "--wait=false", check=False
            )


@pytest.fixture(scope="module")
def argocd(kube: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """One Argo CD for the test module (started on first use, stopped after its last test)."""
    try:
        bin_dir = run_build("build-argocd.sh", timeout=3000)
    except ToolError as error:
        pytest.fail(str(error), pytrace=False)
    with argocd_running(kube, bin_dir, tmp_path_factory.mktemp("argocd")) as argo:
        yield argo
