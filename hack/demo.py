"""`make demo`: the whole operator on this machine, no Docker and no cloud account needed.

It builds what is missing (Kubernetes, MinIO and helm from their Go modules, cached in ~/.cache/pgwarden),
starts a local control plane with its node agent (hack/cluster-up.sh), a PostgreSQL and a MinIO, installs
the CRDs and the operator's RBAC from the Helm chart, runs `pgwarden operator` under the chart's
ServiceAccount, applies examples/*.yaml pointed at the local servers, waits for them and shows
`kubectl get pgwarden` and `kubectl describe`. Everything stays up for you to poke at;
`make demo-down` (this script with --down) stops it all. State, logs and kubeconfigs: .local/demo/.

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

from pgwarden.testing import localpg, s3server

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / ".local"
DEMO = LOCAL / "demo"
LOCK = LOCAL / "demo.lock"  # outside DEMO, which --down removes
STATE = DEMO / "state.json"
KUBECONFIG = DEMO / "kubeconfig"  # hack/cluster-up.sh writes it there with PGWARDEN_LOCAL_DIR=DEMO
OPERATOR_KUBECONFIG = DEMO / "operator.kubeconfig"
OPERATOR_LOG = DEMO / "operator.log"
NAMESPACE = "demo"
RELEASE = "pgwarden"
BUCKET = demo_support.EXAMPLE_BUCKET
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
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
    missing = []
    if not (os.environ.get("ETCD_BIN") or shutil.which("etcd")):
        missing.append("etcd (Debian: etcd-server)")
    if not shutil.which("openssl"):
        missing.append("openssl")
    if not (shutil.which("bwrap") or shutil.which("unshare")):
        missing.append("bubblewrap (bwrap) to run the Jobs' pods as sandboxed processes")
    cache = Path(
        os.environ.get("PGWARDEN_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pgwarden"
    )
    needs_go = not all(any(cache.glob(f"{name}-*/bin/.complete")) for name in ("kubernetes", "minio", "helm"))
    if needs_go and not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        missing.append("Go >= 1.24 (to build Kubernetes, MinIO and helm once)")
    if missing:
        raise DemoError(
            "missing on this machine: "
            + "; ".join(missing)
            + "\n  Debian/Ubuntu: apt-get install $(cat hack/apt-packages.txt | grep -v '^#')"
        )


def build_binaries() -> tuple[Path, Path]:
    """kubectl's directory and helm; MinIO is found by pgwarden.testing.s3server the same way."""
    binaries = {}
    for script in ("build-k8s.sh", "build-minio.sh", "build-helm.sh"):
        started = time.monotonic()
        binaries[script] = demo_support.run_build(script, progress=sys.stdout)
        say(f"{script}: {binaries[script]} ({time.monotonic() - started:.0f}s)")
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
                say(f"PostgreSQL {server.version} already running on 127.0.0.1:{server.port}")
                return server
        except psycopg.Error:
            server.stop()  # a stale one (a reboot, a kill): start afresh
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    base = DEMO / "postgres"
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # when root, the server runs as nobody and needs to reach its directory
    server = localpg.start(base_dir=base)
    state["postgres"] = {
        "bin_dir": str(server.install.bin_dir),
        "version": server.version,
        "data_dir": str(server.data_dir),
        "port": server.port,
        "password": server.password,
    }
    write_state(state)
    say(f"PostgreSQL {server.version} started on 127.0.0.1:{server.port} (data: {server.data_dir})")
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
    minio = Minio(f"http://127.0.0.1:{port}", "pgwarden-demo", os.urandom(18).hex())
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
        f"127.0.0.1:{port}",
        "--console-address",
        f"127.0.0.1:{console}",
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


def install_chart(kubectl: Kubectl, helm: Path) -> list[Obj]:
    """The chart's CRDs and its namespaced RBAC for the demo namespace; the manifests, for the operator's args."""
    settings = demo_support.namespaced_rbac_settings(NAMESPACE)
    manifests = demo_support.render_chart(helm, *settings, release=RELEASE, namespace=NAMESPACE)
    say(f"helm template {RELEASE} charts/pgwarden -n {NAMESPACE} " + " ".join(f"--set {s}" for s in settings))
    kubectl.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(demo_support.CHART / "crds"))
    for plural in ("databasemigrations", "databasebackups", "databaserestores"):
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.pgwarden.io")
    rbac = demo_support.operator_rbac(manifests)
    kubectl.apply(rbac)
    say("applied the CRDs and " + ", ".join(f"{m['kind']} {NAMESPACE}/{m['metadata']['name']}" for m in rbac))
    return manifests


def service_account_kubeconfig(kubectl: Kubectl, account: str) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount (TokenRequest API), so the operator is not admin."""
    token = kubectl("create", "token", account, "-n", NAMESPACE, "--duration", "24h").strip()
    admin = json.loads(kubectl("config", "view", "--raw", "-o", "json"))
    user = f"system:serviceaccount:{NAMESPACE}:{account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "pgwarden-local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "pgwarden-local", "user": user, "namespace": NAMESPACE},
            }
        ],
        "current-context": "operator",
    }
    OPERATOR_KUBECONFIG.write_text(json.dumps(config, indent=1))
    OPERATOR_KUBECONFIG.chmod(0o600)
    return OPERATOR_KUBECONFIG


def start_operator(state: Obj, kubectl: Kubectl, manifests: list[Obj]) -> int:
    """`pgwarden operator` with the chart's arguments, as the chart's ServiceAccount; restarted each run."""
    saved = state.get("operator") or {}
    stop_process("the previous operator", saved.get("pid"), str(OPERATOR_KUBECONFIG))
    kubeconfig = service_account_kubeconfig(kubectl, demo_support.service_account_name(manifests))
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    health, metrics = localpg.free_port(), localpg.free_port()
    args = [
        a
        for a in container["args"]
        if not a.startswith(("--liveness-port", "--metrics-port", "--log-format"))
    ]
    args += [f"--liveness-port={health}", f"--metrics-port={metrics}", "--log-format=text"]
    args += [f"--kubeconfig={kubeconfig}"]
    # Not a Secret value in sight: the operator never reads them, its Jobs get them by secretKeyRef.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "KUBE"))}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    env["PGWARDEN_TIMER_INTERVAL"] = "5"  # the chart's default is 15s; the demo polls a little faster
    pid = spawn([PGWARDEN, *args], OPERATOR_LOG, env)
    state["operator"] = {"pid": pid, "health": health, "metrics": metrics}
    write_state(state)
    say(f"$ pgwarden {' '.join(args)}")
    while True:
        if not running(pid, str(kubeconfig)):
            raise DemoError(f"the operator exited:\n{tail(OPERATOR_LOG, 20)}")
        if http_ok(f"http://127.0.0.1:{health}/healthz"):
            break
        deadline.left()
        time.sleep(0.3)
    say(f"operator pid {pid} is live (http://127.0.0.1:{health}/healthz, metrics on :{metrics}/metrics)")
    say(f"log: {OPERATOR_LOG.relative_to(REPO)}")
    return pid


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


def wait_for(
    kubectl: Kubectl, operator: int, wanted: dict[tuple[str, str], str], seen: dict[tuple[str, str], str]
) -> None:
    """Print each phase change as it happens, until every resource in `wanted` is in its phase."""
    while True:
        if not running(operator, str(OPERATOR_KUBECONFIG)):
            raise DemoError(f"the operator (pid {operator}) exited:\n{tail(OPERATOR_LOG, 30)}")
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
                    f"kubectl describe {SHORT[key[0]]} {key[1]} -n {NAMESPACE} says more; "
                    f"operator log: {OPERATOR_LOG}"
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
    step("checking this machine")
    check_prerequisites()
    say("etcd, openssl, bubblewrap: present")
    step(
        "building what is missing (Kubernetes, MinIO, helm from their Go modules; cached after the first time)"
    )
    k8s_bin, helm = build_binaries()
    deadline.begin()
    DEMO.mkdir(parents=True, exist_ok=True)
    state = read_state()

    step("local control plane: etcd, kube-apiserver, kube-controller-manager and the node agent")
    out = stream([str(REPO / "hack" / "cluster-up.sh")], timeout=deadline.left(600), env=CLUSTER_ENV)
    say(out.strip().splitlines()[-1] if out.strip() else "cluster up")
    kubectl = Kubectl(k8s_bin / "kubectl")

    step("PostgreSQL (the newest on this machine) and MinIO (S3)")
    pg = start_postgres(state)
    minio = start_minio(state)
    create_bucket(minio)
    say(f"bucket {BUCKET} ready")

    step("the chart's CRDs and RBAC (namespaced: a Role in namespace demo only)")
    manifests = install_chart(kubectl, helm)

    step("pgwarden operator, as the chart's ServiceAccount (a token, not admin)")
    operator = start_operator(state, kubectl, manifests)

    step("examples/*.yaml, pointed at this machine's PostgreSQL and MinIO")
    databases = reset_examples(kubectl, pg)
    examples = demo_support.local_examples(pg, minio, BUCKET, databases)
    # Migrations first, so the backup and the restore have the migrated tables to show.
    first = [d for d in examples if d["kind"] not in ("DatabaseBackup", "DatabaseRestore")]
    for line in kubectl.apply(first, "-n", NAMESPACE).splitlines():
        say(line)
    seen: dict[tuple[str, str], str] = {}
    step("waiting for the migrations (shop: backup first, migrate, verify; inventory: fails, rolls back)")
    wait_for(kubectl, operator, {k: v for k, v in EXPECTED.items() if k[0] == "DatabaseMigration"}, seen)
    step("now the backups and the restore (the restore waits for shop-backup's first backup)")
    rest = [d for d in examples if d["kind"] in ("DatabaseBackup", "DatabaseRestore")]
    for line in kubectl.apply(rest, "-n", NAMESPACE).splitlines():
        say(line)
    wait_for(kubectl, operator, EXPECTED, seen)

    step(f"{GREEN}all five examples are where they should be{RESET}")
    show(f"kubectl get pgwarden -n {NAMESPACE}", kubectl("get", "pgwarden", "-n", NAMESPACE))
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
  kubectl get jobs,pods,events -n {NAMESPACE}
  kubectl logs -n {NAMESPACE} job/<a job above>            # the report of a run
  kubectl annotate dbmig <name> -n {NAMESPACE} pgwarden.io/approved=<generation> --overwrite   # approval: Manual
  tail -f {OPERATOR_LOG.relative_to(REPO)}                  # the operator (pid {state["operator"]["pid"]})
  psql "$(kubectl get secret shop-db -n {NAMESPACE} -o jsonpath='{{.data.uri}}' | base64 -d)"
Edit examples/*.yaml and re-run `make demo`, or kubectl apply your own resources in namespace {NAMESPACE}.
{BOLD}make demo-down{RESET} stops it all (control plane, node agent, operator, PostgreSQL, MinIO) and removes {DEMO.relative_to(REPO)}/.
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
    stop_process("the operator", (state.get("operator") or {}).get("pid"), str(OPERATOR_KUBECONFIG))
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
    shutil.rmtree(DEMO, ignore_errors=True)
    say(f"removed {DEMO.relative_to(REPO)}/; no demo process left")


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
