"""`make demo`: the whole operator on this machine, no Docker and no cloud account needed.

It builds what is missing (Kubernetes, MinIO and helm from their Go modules, pgwarden's image with podman,
cached in ~/.cache/pgwarden), starts a local cluster with a real node (hack/cluster-up.sh: containerd,
runc, the kubelet), a PostgreSQL and a MinIO on the node's bridge, installs the CRDs and the chart with
`helm install` (namespaced RBAC, the operator's Deployment from pgwarden's image), applies
examples/*.yaml pointed at the local servers, waits for them and shows `kubectl get pgwarden`, the node
and the Pods. Everything stays up for you to poke at; `make demo-down` (this script with --down) stops it
all and leaves no process, mount or network device behind. State, logs and kubeconfigs: .local/demo/.

Re-running it reuses what runs and starts the examples afresh (new databases, resources re-created).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import demo_support
import psycopg
from pgwarden_testing import localpg, s3server
from pgwarden_testing.node_network import node_network

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / ".local"
DEMO = LOCAL / "demo"
LOCK = LOCAL / "demo.lock"  # outside DEMO, which --down removes
STATE = DEMO / "state.json"
KUBECONFIG = DEMO / "kubeconfig"  # hack/cluster-up.sh writes it there with PGWARDEN_LOCAL_DIR=DEMO
NAMESPACE = "demo"
RELEASE = "pgwarden"
BUCKET = demo_support.EXAMPLE_BUCKET
# The demo's cluster has a bridge and subnet of its own, chosen for .local/demo by hack/node_env.sh.
CLUSTER_ENV = {**os.environ, "PGWARDEN_LOCAL_DIR": str(DEMO)}
# What each example should end as: the failing migration rolls back, the nightly one waits for 02:00.
EXPECTED = {
    ("DatabaseMigration", "shop"): "Succeeded",
    ("DatabaseMigration", "inventory"): "RolledBack",
    ("DatabaseBackup", "shop-backup"): "Succeeded",
    ("DatabaseBackup", "shop-nightly"): "Scheduled",
    ("DatabaseRestore", "shop-restored"): "Succeeded",
}
SHORT = {"DatabaseMigration": "dbmig", "DatabaseBackup": "dbbackup", "DatabaseRestore": "dbrestore"}
Obj = dict[str, Any]


class DemoError(Exception):
    """Stops the demo with a message that says what failed and where to look."""


def gateway() -> str:
    """The demo bridge's own address, where Pods reach the API server, PostgreSQL and MinIO (recorded by
    hack/cluster-up.sh in .local/demo/network)."""
    return node_network(DEMO).gateway


# -- output ----------------------------------------------------------------------------------------

STARTED = time.monotonic()
BOLD, DIM, RED, GREEN, RESET = (
    ("\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


def clock() -> str:
    elapsed = int(time.monotonic() - STARTED)
    return f"{elapsed // 60:2d}:{elapsed % 60:02d}"


def step(text: str) -> None:
    print(f"\n{BOLD}[{clock()}] {text}{RESET}", flush=True)


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def show(command: str, output: str) -> None:
    print(f"\n{BOLD}$ {command}{RESET}\n{output.rstrip()}", flush=True)


# -- time limit ------------------------------------------------------------------------------------


@dataclass
class Deadline:
    """The demo's total time limit (builds excepted: a first build's minutes are not the demo's)."""

    seconds: float
    start: float = 0.0

    def begin(self) -> None:
        self.start = time.monotonic()

    def left(self, cap: float | None = None) -> float:
        remaining = self.start + self.seconds - time.monotonic()
        if remaining <= 0:
            raise DemoError(
                f"the demo took longer than its {self.seconds:.0f}s limit (PGWARDEN_DEMO_TIMEOUT to change it)"
            )
        return min(remaining, cap) if cap else remaining


deadline = Deadline(float(os.environ.get("PGWARDEN_DEMO_TIMEOUT", "900")))


# -- processes we start (by pid file, never by name) -------------------------------------------------


def read_state() -> Obj:
    try:
        return dict(json.loads(STATE.read_text()))
    except (OSError, ValueError):
        return {}


def write_state(state: Obj) -> None:
    STATE.write_text(json.dumps(state, indent=1))
    STATE.chmod(0o600)


def running(pid: int | None, marker: str) -> bool:
    """Whether pid runs (not a zombie) a command line that contains marker (guards against pid reuse)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z" and marker in cmdline


def stop_process(name: str, pid: int | None, marker: str, grace: float = 15) -> None:
    if not running(pid, marker):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # each was started in a session of its own
    end = time.monotonic() + grace
    while running(pid, marker) and time.monotonic() < end:
        time.sleep(0.1)
    if running(pid, marker):
        say(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    say(f"stopped {name} (pid {pid})")


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """A detached process (own session, so Ctrl-C here does not reach it) logging to `log`."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=REPO,
        )
    return process.pid


def run(
    command: list[str], *, timeout: float, input: str | None = None, env: dict[str, str] | None = None
) -> str:
    try:
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        deadline.left()  # past the demo's limit: says so
        raise DemoError(f"{' '.join(command[:4])} … took more than {timeout:.0f}s") from None
    if result.returncode != 0:
        raise DemoError(
            f"{' '.join(command[:4])} … exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def stream(command: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a script whose progress is on stderr: show it indented, return stdout."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        say(line.rstrip())
    try:
        stdout = process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired as error:
        process.kill()
        raise DemoError(f"{command[0]} took more than {timeout:.0f}s") from error
    if process.returncode != 0:
        raise DemoError(f"{command[0]} failed (exit {process.returncode}):\n{stdout}{''.join(lines)[-3000:]}")
    return stdout


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One `make demo` or `make demo-down` at a time."""
    LOCAL.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("demo: another `make demo` or `make demo-down` is running; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- the parts ---------------------------------------------------------------------------------------


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path = KUBECONFIG) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return run(
            [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            timeout=deadline.left(timeout),
        )

    def apply(self, manifests: list[Obj], *extra: str) -> str:
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        return self("apply", *extra, "-f", "-", input=document)


def check_prerequisites() -> None:
    """Root (containerd and the kubelet need it), the Debian packages, Go for a first build."""
    if os.geteuid() != 0:
        raise DemoError("run as root: the node's containerd and kubelet need it (sudo make demo)")
    stream([str(REPO / "hack" / "install-packages.sh"), "demo"], timeout=1800)
    cache = Path(
        os.environ.get("PGWARDEN_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pgwarden"
    )
    needs_go = not all(
        any(cache.glob(f"{name}-*/bin/.complete"))
        for name in ("kubernetes", "kubernetes-node", "minio", "helm")
    )
    if needs_go and not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        raise DemoError("missing on this machine: Go >= 1.26 (to build Kubernetes, MinIO and helm once)")


def build_binaries() -> tuple[Path, Path]:
    """kubectl's directory and helm; MinIO's binary is named for pgwarden_testing.s3server in its variable."""
    binaries = {}
    for script in ("build-k8s.sh", "build-minio.sh", "build-helm.sh", "build-image.sh", "build-pause.sh"):
        started = time.monotonic()
        binaries[script] = demo_support.run_build(script, progress=sys.stdout)
        say(f"{script}: {binaries[script]} ({time.monotonic() - started:.0f}s)")
    os.environ[s3server.MINIO_BIN_ENV] = str(binaries["build-minio.sh"])
    node = demo_support.run_build("build-k8s.sh", progress=sys.stdout, args=("--node",))
    say(f"build-k8s.sh --node: {node}")
    return binaries["build-k8s.sh"], binaries["build-helm.sh"]


def start_postgres(state: Obj) -> localpg.LocalPostgres:
    saved = state.get("postgres")
    if saved:
        server = localpg.LocalPostgres(
            install=localpg.PgInstall(Path(saved["bin_dir"]), saved["version"]),
            data_dir=Path(saved["data_dir"]),
            port=saved["port"],
            password=saved["password"],
        )
        try:
            with psycopg.connect(server.url(), connect_timeout=3):
                server.serve_pods(gateway())
                say(f"PostgreSQL {server.version} already running on 127.0.0.1 and {gateway()}:{server.port}")
                return server
        except psycopg.Error:
            server.stop()  # a stale one (a reboot, a kill): start afresh
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    base = DEMO / "postgres"
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # when root, the server runs as nobody and needs to reach its directory
    server = localpg.start(base_dir=base, detached=True)  # it stays up after `make demo` returns
    server.serve_pods(gateway())  # the Jobs' Pods reach it on the bridge
    state["postgres"] = {
        "bin_dir": str(server.install.bin_dir),
        "version": server.version,
        "data_dir": str(server.data_dir),
        "port": server.port,
        "password": server.password,
    }
    write_state(state)
    say(
        f"PostgreSQL {server.version} started on 127.0.0.1 and {gateway()}:{server.port} (data: {server.data_dir})"
    )
    return server


@dataclass
class Minio:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=s3server.REGION,
            config=Config(s3={"addressing_style": "path"}),
        )


def http_ok(url: str) -> bool:
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        urllib.request.urlopen(url, timeout=2) as reply,
    ):
        return bool(reply.status == 200)
    return False


def minio_ready(endpoint: str) -> bool:
    return http_ok(f"{endpoint}/minio/health/ready")


def start_minio(state: Obj) -> Minio:
    saved = state.get("minio")
    data_dir = DEMO / "minio" / "data"
    if saved and running(saved["pid"], str(data_dir)) and minio_ready(saved["endpoint"]):
        say(f"MinIO already running at {saved['endpoint']}")
        return Minio(saved["endpoint"], saved["access_key"], saved["secret_key"])
    if saved:
        stop_process("MinIO", saved["pid"], str(data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    port, console = localpg.free_port(), localpg.free_port()
    # On the bridge only: this machine and the Jobs' Pods reach it there.
    minio = Minio(f"http://{gateway()}:{port}", "pgwarden-demo", os.urandom(18).hex())
    env = {
        **os.environ,
        "MINIO_ROOT_USER": minio.access_key,
        "MINIO_ROOT_PASSWORD": minio.secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
        "HOME": str(data_dir.parent),
    }
    binary = s3server.minio_binary()
    command = [
        str(binary),
        "server",
        "--quiet",
        "--address",
        f"{gateway()}:{port}",
        "--console-address",
        f"{gateway()}:{console}",
        str(data_dir),
    ]
    pid = spawn(command, DEMO / "minio" / "minio.log", env)
    state["minio"] = {"pid": pid, **minio.__dict__}
    write_state(state)
    while not minio_ready(minio.endpoint):
        if not running(pid, str(data_dir)):
            raise DemoError(f"MinIO exited; see {DEMO / 'minio' / 'minio.log'}")
        deadline.left()
        time.sleep(0.2)
    say(f"MinIO started at {minio.endpoint} (data: {data_dir})")
    return minio


def install_chart(kubectl: Kubectl, helm: Path, image: str, apiserver: tuple[str, int]) -> None:
    """The CRDs, then `helm upgrade --install` of the chart in namespace demo (namespaced RBAC, the
    operator's Deployment from pgwarden's image in the node's containerd); waits until the operator is live."""
    kubectl.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": NAMESPACE,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            }
        ]
    )
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(demo_support.CHART / "crds"))
    for plural in ("databasemigrations", "databasebackups", "databaserestores"):
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.pgwarden.io")
    say(f"namespace {NAMESPACE} (pod-security.kubernetes.io/enforce: restricted) and the CRDs")
    values = DEMO / "values.json"
    values.write_text(
        json.dumps(demo_support.local_values(image, NAMESPACE, apiserver, timer_interval=5), indent=1)
    )
    command = [str(helm), "upgrade", "--install", RELEASE, str(demo_support.CHART), "--namespace", NAMESPACE]
    command += ["--skip-crds", "--values", str(values), "--kubeconfig", str(KUBECONFIG)]
    say(
        f"$ helm upgrade --install {RELEASE} charts/pgwarden -n {NAMESPACE} --values {values.relative_to(REPO)}"
    )
    for line in run(command, timeout=deadline.left(120)).splitlines()[:6]:
        say(f"  {line}")
    # A new image (an edited source tree) rolls the Deployment; Recreate stops the old Pod first.
    kubectl(
        "rollout", "status", f"deployment/{RELEASE}", "-n", NAMESPACE, f"--timeout={int(deadline.left(180))}s"
    )
    pod = operator_pod(kubectl)
    say(f"operator Pod {pod} is live (its image: {image})")


def operator_pod(kubectl: Kubectl) -> str:
    """The operator's running Pod, or DemoError with what the Pods say."""
    selector = f"app.kubernetes.io/name=pgwarden,app.kubernetes.io/instance={RELEASE}"
    pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json"))["items"]
    running = [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    if not running:
        described = kubectl("describe", "pods", "-n", NAMESPACE, "-l", selector)
        raise DemoError(f"the operator's Pod is not running:\n{described[-3000:]}")
    return str(running[0]["metadata"]["name"])


def operator_log(kubectl: Kubectl, lines: int) -> str:
    return kubectl("logs", f"deployment/{RELEASE}", "-n", NAMESPACE, f"--tail={lines}")


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def reset_examples(kubectl: Kubectl, pg: localpg.LocalPostgres) -> dict[str, str]:
    """Remove a previous run's resources (their Jobs and CronJob go with them) and its databases."""
    existing = kubectl("get", "dbmig,dbbackup,dbrestore", "-n", NAMESPACE, "-o", "name").split()
    if existing:
        say(f"removing the previous run's {len(existing)} resources (their Jobs are garbage-collected)")
        kubectl("delete", "dbmig,dbbackup,dbrestore", "--all", "-n", NAMESPACE, "--wait=true", timeout=120)
        kubectl("delete", "jobs,cronjobs", "--all", "-n", NAMESPACE, "--cascade=foreground", timeout=120)
    databases = {}
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        for name in ("shop", "inventory", "shop_restored"):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for name in ("shop", "inventory"):
            conn.execute(f'CREATE DATABASE "{name}"')
            databases[name] = pg.url(name)
    say("databases shop and inventory created empty (shop_restored is the restore's to create)")
    return databases


def create_bucket(minio: Minio) -> None:
    client = minio.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)


def phases(kubectl: Kubectl) -> dict[tuple[str, str], Obj]:
    items = json.loads(kubectl("get", "dbmig,dbbackup,dbrestore", "-n", NAMESPACE, "-o", "json"))["items"]
    return {(i["kind"], i["metadata"]["name"]): i.get("status") or {} for i in items}


def ready_message(status: Obj) -> str:
    ready: Obj = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    return str(status.get("message") or ready.get("message") or "")


def wait_for(kubectl: Kubectl, wanted: dict[tuple[str, str], str], seen: dict[tuple[str, str], str]) -> None:
    """Print each phase change as it happens, until every resource in `wanted` is in its phase."""
    while True:
        statuses = phases(kubectl)
        for key in sorted(statuses):
            phase = statuses[key].get("phase") or "(no status yet)"
            if seen.get(key) != phase:
                seen[key] = phase
                message = ready_message(statuses[key])
                shown = f"{SHORT[key[0]]}/{key[1]}"
                extra = f" {DIM}— {message[:110]}{RESET}" if message else ""
                say(f"[{clock()}] {shown:<26} {phase}{extra}")
        done = all(statuses.get(key, {}).get("phase") == phase for key, phase in wanted.items())
        if done:
            return
        for key, phase in wanted.items():
            current = statuses.get(key, {}).get("phase")
            if current in ("Succeeded", "Failed", "RolledBack", "Scheduled") and current != phase:
                raise DemoError(
                    f"{SHORT[key[0]]}/{key[1]} ended {current}, not {phase}: {ready_message(statuses[key])}\n"
                    f"kubectl describe {SHORT[key[0]]} {key[1]} -n {NAMESPACE} says more; the operator's "
                    f"log ends:\n{operator_log(kubectl, 30)}"
                )
        try:
            deadline.left()
        except DemoError as error:
            pending = [
                f"{SHORT[k[0]]}/{k[1]}" for k, p in wanted.items() if statuses.get(k, {}).get("phase") != p
            ]
            raise DemoError(f"{error}; still waiting for {', '.join(pending)}") from None
        time.sleep(1)


# -- up and down -------------------------------------------------------------------------------------


def up() -> None:
    step("checking this machine (root, the Debian packages of hack/apt-packages.txt)")
    check_prerequisites()
    step(
        "building what is missing (Kubernetes, MinIO, helm from their Go modules, pgwarden's image; "
        "cached after the first time)"
    )
    k8s_bin, helm = build_binaries()
    deadline.begin()
    DEMO.mkdir(parents=True, exist_ok=True)
    state = read_state()

    step("local cluster: etcd, kube-apiserver, kube-controller-manager, and a node (containerd, kubelet)")
    out = stream([str(REPO / "hack" / "cluster-up.sh")], timeout=deadline.left(600), env=CLUSTER_ENV)
    lines = out.strip().splitlines()
    image = next(line.split()[1] for line in lines if line.startswith("image "))
    say(next((line for line in lines if line.startswith("cluster ")), "cluster up"))
    env = dict(
        line.split("=", 1) for line in (DEMO / "cluster" / "env").read_text().splitlines() if "=" in line
    )
    apiserver = (env["PGWARDEN_APISERVER_HOST"], int(env["PGWARDEN_APISERVER_PORT"]))
    kubectl = Kubectl(k8s_bin / "kubectl")
    show("kubectl get nodes -o wide", kubectl("get", "nodes", "-o", "wide"))

    step(f"PostgreSQL (the newest on this machine) and MinIO (S3), where the Pods reach them ({gateway()})")
    pg = start_postgres(state)
    minio = start_minio(state)
    create_bucket(minio)
    say(f"bucket {BUCKET} ready")

    step(
        "the chart, with helm: the operator's Deployment from pgwarden's image, a Role in namespace demo only"
    )
    install_chart(kubectl, helm, image, apiserver)

    step("examples/*.yaml, pointed at this machine's PostgreSQL and MinIO")
    databases = reset_examples(kubectl, pg)
    examples = demo_support.local_examples(pg, minio, BUCKET, gateway(), databases)
    # Migrations first, so the backup and the restore have the migrated tables to show.
    first = [d for d in examples if d["kind"] not in ("DatabaseBackup", "DatabaseRestore")]
    for line in kubectl.apply(first, "-n", NAMESPACE).splitlines():
        say(line)
    seen: dict[tuple[str, str], str] = {}
    step("waiting for the migrations (shop: backup first, migrate, verify; inventory: fails, rolls back)")
    wait_for(kubectl, {k: v for k, v in EXPECTED.items() if k[0] == "DatabaseMigration"}, seen)
    step("now the backups and the restore (the restore waits for shop-backup's first backup)")
    rest = [d for d in examples if d["kind"] in ("DatabaseBackup", "DatabaseRestore")]
    for line in kubectl.apply(rest, "-n", NAMESPACE).splitlines():
        say(line)
    wait_for(kubectl, EXPECTED, seen)

    step(f"{GREEN}all five examples are where they should be{RESET}")
    show(f"kubectl get pgwarden -n {NAMESPACE}", kubectl("get", "pgwarden", "-n", NAMESPACE))
    show(f"kubectl get pods -n {NAMESPACE}", kubectl("get", "pods", "-n", NAMESPACE))
    show(f"kubectl describe dbmig shop -n {NAMESPACE}", kubectl("describe", "dbmig", "shop", "-n", NAMESPACE))
    inventory = phases(kubectl)[("DatabaseMigration", "inventory")]
    show(
        f"kubectl get dbmig inventory -n {NAMESPACE} -o jsonpath='{{.status.message}}'",
        str(inventory.get("message", "")),
    )
    rel = KUBECONFIG.relative_to(REPO)
    print(
        f"""
{BOLD}Everything is still running — have a look:{RESET}
  export KUBECONFIG=$PWD/{rel} PATH={k8s_bin}:$PATH
  kubectl get pgwarden -n {NAMESPACE}                      # or -w to watch
  kubectl describe dbbackup shop-backup -n {NAMESPACE}
  kubectl get nodes; kubectl get jobs,pods,events -n {NAMESPACE}
  kubectl logs -n {NAMESPACE} job/<a job above>            # the report of a run
  kubectl logs -n {NAMESPACE} deployment/{RELEASE} -f      # the operator
  kubectl annotate dbmig <name> -n {NAMESPACE} pgwarden.io/approved=<generation> --overwrite   # approval: Manual
  psql "$(kubectl get secret shop-db -n {NAMESPACE} -o jsonpath='{{.data.uri}}' | base64 -d)"
Edit examples/*.yaml and re-run `make demo`, or kubectl apply your own resources in namespace {NAMESPACE}.
{BOLD}make demo-down{RESET} stops it all (cluster and node, PostgreSQL, MinIO), leaves no process, mount or network
device behind and removes {DEMO.relative_to(REPO)}/.
The command line without Kubernetes: .venv/bin/python hack/demo_cli.py"""
    )


def ancestors() -> set[int]:
    """This process and its parents (make, a shell), whose command lines may well name the demo."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def leftovers() -> list[int]:
    """Processes still running with a path under .local/demo/ on their command line: ours, whatever they are."""
    pids = []
    marker = f"{DEMO}/"
    mine = ancestors()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in mine and running(int(entry.name), marker):
            pids.append(int(entry.name))
    return pids


def down() -> None:
    state = read_state()
    if not DEMO.exists():
        print("demo: nothing to stop")
        return
    step("stopping the demo")
    try:
        bridge: str | None = node_network(DEMO).bridge
    except RuntimeError:
        bridge = None  # the cluster never came up far enough to choose one
    stop_process("MinIO", (state.get("minio") or {}).get("pid"), str(DEMO / "minio" / "data"))
    result = subprocess.run(
        [str(REPO / "hack" / "cluster-down.sh")], env=CLUSTER_ENV, capture_output=True, text=True, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        say(line)
    saved = state.get("postgres")
    if saved:
        localpg.LocalPostgres(
            install=localpg.PgInstall(Path(saved["bin_dir"]), saved["version"]),
            data_dir=Path(saved["data_dir"]),
            port=saved["port"],
            password=saved["password"],
        ).stop()
        say(f"stopped PostgreSQL {saved['version']} (port {saved['port']})")
    stray = leftovers()
    for pid in stray:
        say(f"stopping a leftover process {pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5 if stray else 0)
    if leftovers():
        raise DemoError(f"processes under {DEMO} survived SIGKILL: {leftovers()}")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    if any(mount.startswith(f"{DEMO}/") for mount in mounts):
        raise DemoError(f"mounts under {DEMO} are left: {[m for m in mounts if m.startswith(f'{DEMO}/')]}")
    if bridge and Path(f"/sys/class/net/{bridge}").exists():
        raise DemoError(f"network device {bridge} is left: `ip link delete {bridge}` removes it")
    shutil.rmtree(DEMO, ignore_errors=True)
    say(f"removed {DEMO.relative_to(REPO)}/; no demo process, mount or network device left")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--down", action="store_true", help="stop everything the demo started and remove its state"
    )
    options = parser.parse_args()
    try:
        with locked():
            if options.down:
                down()
            else:
                up()
        print(f"\n{DIM}wall time {clock()}{RESET}")
        return 0
    except DemoError as error:
        print(f"\n{RED}demo: ERROR: {error}{RESET}", file=sys.stderr)
        if not options.down:
            print("What started is left running for a look; `make demo-down` stops it.", file=sys.stderr)
        return 1
    except demo_support.ToolError as error:
        print(f"\n{RED}demo: ERROR: {error}{RESET}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; what started is left running; `make demo-down` stops it.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
