"""What the operator benches share: the local control plane (started when down, shared with the cluster tests),
kubectl, the API in raw JSON (watches, counts, collection deletes), and the processes' CPU and memory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / ".local"
KUBECONFIG = LOCAL / "kubeconfig"
CLUSTER_DIR = LOCAL / "cluster"
LOCK_FILE = LOCAL / "cluster-tests.lock"
USERS_FILE = LOCAL / "cluster-tests.json"
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Obj = dict[str, Any]


# -- the control plane ---------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LOCAL.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _users() -> Obj:
    try:
        state = dict(json.loads(USERS_FILE.read_text()))
    except (OSError, ValueError):
        return {"owned": False, "users": []}
    state["users"] = [pid for pid in state.get("users", []) if _alive(pid)]
    return state


@dataclass(frozen=True)
class ControlPlane:
    """What the bench needs of the running cluster: kubectl, and the pgwarden image its node holds."""

    kubectl: Path
    image: str


def loaded_image(cluster_up_stdout: str) -> str:
    """The image hack/cluster-up.sh loaded onto the node (its `image <ref>` line): the only one a Job's Pod
    can start from there (the node pulls nothing)."""
    for line in cluster_up_stdout.splitlines():
        if line.startswith("image "):
            return line.split()[1]
    raise SystemExit("hack/cluster-up.sh printed no `image <ref>` line; pass --job-image")


@contextlib.contextmanager
def control_plane(keep: bool) -> Iterator[ControlPlane]:
    """The local control plane (started when down), with the image its node holds. Joins the cluster tests'
    users file, so neither stops the cluster while the other still uses it."""
    with _locked():
        state = _users()
        up = subprocess.run(
            [str(REPO / "hack" / "cluster-up.sh")], capture_output=True, text=True, cwd=REPO, check=False
        )
        if up.returncode != 0:
            raise SystemExit(f"hack/cluster-up.sh failed:\n{up.stdout}{up.stderr[-3000:]}")
        if "cluster ready in" in up.stdout:
            state = {"owned": not keep, "users": [], "owner": os.getpid()}
        state["users"].append(os.getpid())
        USERS_FILE.write_text(json.dumps(state))
    image = loaded_image(up.stdout)
    bin_dir = subprocess.run(
        [str(REPO / "hack" / "build-k8s.sh")], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    try:
        yield ControlPlane(Path(bin_dir) / "kubectl", image)
    finally:
        with _locked():
            state = _users()
            state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
            if not state["users"] and state.get("owned"):
                subprocess.run([str(REPO / "hack" / "cluster-down.sh")], capture_output=True, check=False)
                USERS_FILE.unlink(missing_ok=True)
            else:
                USERS_FILE.write_text(json.dumps(state))


@dataclass
class Kubectl:
    path: Path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        result = subprocess.run(
            [str(self.path), "--kubeconfig", str(KUBECONFIG), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result.stdout

    def items(self, kind: str, namespace: str) -> list[Obj]:
        return list(json.loads(self("get", kind, "-n", namespace, "-o", "json"))["items"])


# -- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def component_pid(name: str) -> int:
    return int((CLUSTER_DIR / f"{name}.pid").read_text().strip())


def cpu_percent(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU over `seconds` of wall time, in % of one core."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: round(100 * (cpu_seconds(pid) - before[name]) / seconds, 1) for name, pid in pids.items()}


def wait_until(what: str, done: Callable[[], bool], timeout: float, interval: float = 2.0) -> float:
    """Seconds until `done()`; SystemExit naming `what` after `timeout`."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return round(time.monotonic() - started, 1)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the API in raw JSON -------------------------------------------------------------------------

GROUP_PATH = "/apis/pgwarden.io/v1alpha1"
PATHS = {
    "databasebackups": GROUP_PATH,
    "databasemigrations": GROUP_PATH,
    "databasemigrationsets": GROUP_PATH,
    "cronjobs": "/apis/batch/v1",
    "jobs": "/apis/batch/v1",
    "pods": "/api/v1",
    "configmaps": "/api/v1",
    "secrets": "/api/v1",
}


class Api:
    """The API server as the bench reads it: JSON as sent (the client's models take seconds for thousands of
    objects), one client for every thread."""

    def __init__(self) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(KUBECONFIG), client_configuration=configuration)
        configuration.connection_pool_maxsize = 16
        self.pool: urllib3.PoolManager = kubernetes.client.ApiClient(configuration).rest_client.pool_manager
        self.host = str(configuration.host).rstrip("/")
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for setting in dict(configuration.auth_settings()).values():
            self.headers[str(setting["key"])] = str(setting["value"])

    @staticmethod
    def path(kind: str, namespace: str) -> str:
        return f"{PATHS[kind]}/namespaces/{namespace}/{kind}"

    def call(
        self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None
    ) -> Any:
        """The urllib3 response, not read yet (a watch streams)."""
        url = self.host + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        response = self.pool.request(
            method,
            url,
            body=data,
            headers=self.headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=30),
        )
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {response.data.decode()[:500]}")
        return response

    def list(self, kind: str, namespace: str, selector: str = "") -> list[Obj]:
        query = [("labelSelector", selector)] if selector else []
        return list(json.loads(self.call("GET", self.path(kind, namespace), query).data)["items"])

    def count(self, kind: str, namespace: str, selector: str = "") -> int:
        """How many there are, from a list of one (its remainingItemCount): cheap however many exist."""
        query = [("limit", "1")] + ([("labelSelector", selector)] if selector else [])
        answer = json.loads(self.call("GET", self.path(kind, namespace), query).data)
        return len(answer["items"]) + int(answer["metadata"].get("remainingItemCount") or 0)

    def delete_all(self, kind: str, namespace: str) -> None:
        """One DELETE of the collection: the API server deletes each object, in the background for owners."""
        self.call(
            "DELETE",
            self.path(kind, namespace),
            None,
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )


class PhaseWatch(threading.Thread):
    """Every object of one kind in a namespace and its status.phase, from a watch started before they exist:
    when each reached a phase, to the bench's clock, without listing thousands of objects again and again."""

    def __init__(self, api: Api, kind: str, namespace: str) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.api, self.kind, self.namespace = api, kind, namespace
        self.phases: dict[str, str] = {}
        self.reached: dict[str, float] = {}  # name -> when it first showed a phase of `wanted` (monotonic)
        self.wanted: frozenset[str] = frozenset()
        self.guard = threading.Lock()
        self.stopped = threading.Event()
        self.version = "0"
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self._watch()
        except BaseException as error:  # a thread's SystemExit would vanish: done() raises it
            self.error = error

    def _watch(self) -> None:
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", "60")]
        query.append(("resourceVersion", self.version))
        response: urllib3.HTTPResponse = self.api.call("GET", self.api.path(self.kind, self.namespace), query)
        buffer = b""
        try:
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        # 410 Gone: on a loaded machine the watch fell behind the server's window, and
                        # watching again from the same version would fail again at once: list instead.
                        self._relist()
                        return
                    self._event(event)
                if self.stopped.is_set():
                    return
        finally:
            response.release_conn()

    def _relist(self) -> None:
        """Every object as it is now, and the version to watch from: those that reached a wanted phase while
        the watch was broken count from now (late by at most that gap)."""
        answer = json.loads(self.api.call("GET", self.api.path(self.kind, self.namespace)).data)
        for body in answer["items"]:
            self._event({"type": "ADDED", "object": body})
        self.version = str(answer["metadata"]["resourceVersion"])

    def _event(self, event: Obj) -> None:
        body = event["object"]
        self.version = body.get("metadata", {}).get("resourceVersion", self.version)
        if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
            return
        name = body["metadata"]["name"]
        with self.guard:
            if event["type"] == "DELETED":
                self.phases.pop(name, None)
                return
            phase = str((body.get("status") or {}).get("phase") or "")
            self.phases[name] = phase
            if phase in self.wanted and name not in self.reached:
                self.reached[name] = time.monotonic()

    def expect(self, phases: frozenset[str]) -> None:
        with self.guard:
            self.wanted = phases

    def done(self, count: int) -> bool:
        if self.error is not None:
            raise SystemExit(f"watching {self.kind} failed: {self.error!r}")
        with self.guard:
            return len(self.reached) >= count

    def last(self) -> float:
        with self.guard:
            return max(self.reached.values())


# -- kube-controller-manager's own metrics ---------------------------------------------------------


def kcm_metrics() -> dict[str, float]:
    """kube-controller-manager's garbage collector queue and client-side throttling, from its /metrics
    (through the admin's client certificate, which its delegated authentication accepts)."""
    port = _kcm_port()
    pki = CLUSTER_DIR / "pki"
    pool = urllib3.PoolManager(
        cert_reqs="CERT_NONE", cert_file=str(pki / "admin.crt"), key_file=str(pki / "admin.key")
    )
    urllib3.disable_warnings()
    text = pool.request("GET", f"https://127.0.0.1:{port}/metrics", timeout=30).data.decode()
    wanted = {
        'workqueue_adds_total{name="garbage_collector_attempt_to_delete"}': "gc_attempt_to_delete",
        'workqueue_depth{name="garbage_collector_attempt_to_delete"}': "gc_depth",
    }
    found: dict[str, float] = {"throttled_seconds": 0.0, "requests": 0.0}
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key in wanted:
            found[wanted[key]] = float(value)
        elif key.startswith("rest_client_rate_limiter_duration_seconds_sum"):
            found["throttled_seconds"] += float(value)
        elif key.startswith("rest_client_requests_total"):
            found["requests"] += float(value)
    return found


def _kcm_port() -> int:
    """The secure port kube-controller-manager listens on (hack/cluster-up.sh picks the API server's + 1)."""
    for line in (CLUSTER_DIR / "env").read_text().splitlines():
        if line.startswith("PGWARDEN_APISERVER_PORT="):
            return int(line.split("=", 1)[1]) + 1
    raise SystemExit(f"no PGWARDEN_APISERVER_PORT in {CLUSTER_DIR / 'env'}")


# -- the operator ----------------------------------------------------------------------------------


def start_operator(namespace: str, workers: int, job_image: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "KUBE"))}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                PGWARDEN,
                "operator",
                "--namespace",
                namespace,
                "--kubeconfig",
                str(KUBECONFIG),
                "--job-image",
                job_image,
                "--liveness-port",
                "0",
                "--metrics-port",
                "0",
                "--workers",
                str(workers),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
