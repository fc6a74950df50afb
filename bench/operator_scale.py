"""Benchmark: how the operator keeps up with many resources on the local control plane (issues 10 and 21).

Applies N scheduled DatabaseBackups and M one-time DatabaseMigrations in a fresh namespace, none of which
does database work (the Secrets they name do not exist: backups only get their CronJob, migrations fail at
once), and measures what a platform team feels:

- time to converge: from `kubectl apply` until every backup shows a CronJob and phase Scheduled (when the
  last one turned Ready, from its condition, so the bench's own polling is not counted), and until
  every migration also shows a final phase (its Job's pod has to start and fail, so that part measures the
  node as much as the operator);
- idle CPU over --idle-seconds (default 60), from /proc/<pid>/stat, of the operator, kube-apiserver and etcd
  (beside a baseline of the same control plane before the operator started), and the operator's RSS;
- time to delete: from `kubectl delete` until the resources and their CronJobs are gone.

    .venv/bin/python bench/operator_scale.py                      # 300 backups, 30 migrations
    .venv/bin/python bench/operator_scale.py -n 1000 --migrations 100 --workers 8 --json

With --set, one DatabaseMigrationSet over --targets Secrets (default 300) instead, rolled out canary first
then --max-parallel at once. Its Jobs' Pods never start (a node selector no node has); the bench completes
each Job through its status subresource --job-seconds after it was created, as kwok's fake nodes would, so
what is measured is the operator: the time until every child DatabaseMigration exists, the time from the last
Job done until the set is Complete, and the operator's idle CPU and RSS with the set and its children:

    .venv/bin/python bench/operator_scale.py --set                # 300 targets, 25 at once
    .venv/bin/python bench/operator_scale.py --set --targets 1000 --max-parallel 50

Starts the control plane with hack/cluster-up.sh when it is not up (and stops it afterwards unless
--keep-cluster), sharing it with cluster test runs the way tests/cluster/conftest.py does.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

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


# -- the resources -------------------------------------------------------------------------------


def backup(name: str) -> Obj:
    return {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseBackup",
        "metadata": {"name": name},
        "spec": {
            "database": {"secretRef": {"name": "no-such-db"}},
            "storage": {"s3": {"bucket": "bench-backups", "credentialsSecretRef": {"name": "no-such-s3"}}},
            "schedule": "17 3 * * *",
            "retention": {"keepLast": 7},
        },
    }


def migration(name: str) -> Obj:
    return {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": {
            "database": {"secretRef": {"name": "no-such-db"}},
            "migrations": {"inline": [{"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"}]},
        },
    }


def backups_converged(kubectl: Kubectl, namespace: str, backups: int) -> Callable[[], bool]:
    """Every backup Scheduled, with its CronJob."""

    def check() -> bool:
        items = kubectl.items("databasebackups", namespace)
        scheduled = [b for b in items if (b.get("status") or {}).get("phase") == "Scheduled"]
        return len(scheduled) >= backups and len(kubectl.items("cronjobs", namespace)) >= backups

    return check


def last_ready(kubectl: Kubectl, namespace: str) -> float:
    """When the last backup turned Ready (its condition's lastTransitionTime, to the second, rounded up): the
    moment the operator converged, without the seconds the bench's own polling of 600 objects takes."""
    times = [
        datetime.fromisoformat(str(c["lastTransitionTime"]).replace("Z", "+00:00")).timestamp() + 1
        for b in kubectl.items("databasebackups", namespace)
        for c in (b.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "True"
    ]
    return max(times)


def migrations_converged(kubectl: Kubectl, namespace: str, migrations: int) -> Callable[[], bool]:
    """Every migration in a final phase (their Jobs run: pods start and fail on the missing Secret)."""
    final = ("Succeeded", "Failed", "RolledBack", "Cancelled")

    def check() -> bool:
        items = kubectl.items("databasemigrations", namespace)
        return len([m for m in items if (m.get("status") or {}).get("phase") in final]) >= migrations

    return check


def gone(kubectl: Kubectl, namespace: str) -> Callable[[], bool]:
    def check() -> bool:
        return not any(
            kubectl.items(kind, namespace) for kind in ("databasebackups", "databasemigrations", "cronjobs")
        )

    return check


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    backups: int
    migrations: int
    workers: int
    converge_seconds: float = 0.0
    backups_converge_seconds: float = 0.0
    backups_seen_seconds: float = 0.0  # when the bench's polling (kubectl get of 600 objects) saw it
    apply_seconds: float = 0.0  # kubectl apply itself: the floor of converging, whatever the operator does
    delete_seconds: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    baseline_cpu_percent: dict[str, float] = field(default_factory=dict)
    operator_rss_mib: float = 0.0


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


def run(args: argparse.Namespace, kubectl: Kubectl, job_image: str) -> Result:
    result = Result(backups=args.n, migrations=args.migrations, workers=args.workers)
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pgwarden-bench",
        "-f",
        str(REPO / "crds"),
    )
    namespace = f"bench-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    log = LOCAL / f"{namespace}-operator.log"
    plane = {name: component_pid(name) for name in ("kube-apiserver", "etcd")}

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    say(f"namespace {namespace}; baseline CPU of the control plane over {args.baseline_seconds:g}s")
    result.baseline_cpu_percent = cpu_percent(plane, args.baseline_seconds) if args.baseline_seconds else {}
    say(f"Jobs run {job_image}")
    operator = start_operator(namespace, args.workers, job_image, log)
    try:
        time.sleep(3)  # kopf's start-up (login, watches) is not what is measured
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited; log: {log}")
        items = [backup(f"b{i:04d}") for i in range(args.n)] + [
            migration(f"m{i:04d}") for i in range(args.migrations)
        ]
        for item in items:
            item["metadata"]["namespace"] = namespace
        say(f"applying {args.n} scheduled DatabaseBackups and {args.migrations} DatabaseMigrations")
        started, wall = time.monotonic(), time.time()
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        result.apply_seconds = round(time.monotonic() - started, 1)
        wait_until("the backups", backups_converged(kubectl, namespace, args.n), args.timeout)
        result.backups_seen_seconds = round(time.monotonic() - started, 1)
        result.backups_converge_seconds = round(last_ready(kubectl, namespace) - wall, 1)
        wait_until("the migrations", migrations_converged(kubectl, namespace, args.migrations), args.timeout)
        result.converge_seconds = round(time.monotonic() - started, 1)
        say(f"converged in {result.converge_seconds}s; idle CPU over {args.idle_seconds:g}s")
        result.idle_seconds = args.idle_seconds
        result.idle_cpu_percent = cpu_percent({"operator": operator.pid, **plane}, args.idle_seconds)
        result.operator_rss_mib = round(rss_mib(operator.pid), 1)
        say("deleting")
        started = time.monotonic()
        kubectl("delete", "databasebackups,databasemigrations", "--all", "-n", namespace, "--wait=false")
        wait_until("deletion", gone(kubectl, namespace), args.timeout)
        result.delete_seconds = round(time.monotonic() - started, 1)
    finally:
        stop(operator)
        kubectl("delete", "namespace", namespace, "--wait=false")
    return result


def report(result: Result) -> str:
    idle, base = result.idle_cpu_percent, result.baseline_cpu_percent
    lines = [
        f"operator scale: {result.backups} scheduled DatabaseBackups, {result.migrations} DatabaseMigrations, "
        f"{result.workers} workers",
        f"  kubectl apply itself        {result.apply_seconds:8.1f} s  (all resources created)",
        f"  time to converge: backups   {result.backups_converge_seconds:8.1f} s  (CronJob and Scheduled, from "
        f"status; the polling saw it at {result.backups_seen_seconds:.1f} s)",
        f"  time to converge: all       {result.converge_seconds:8.1f} s  (migrations' Jobs run and fail)",
        f"  time to delete              {result.delete_seconds:8.1f} s",
        f"  idle CPU over {result.idle_seconds:g} s (% of a core; baseline without operator)",
    ]
    for name in ("operator", "kube-apiserver", "etcd"):
        baseline = f"  (baseline {base[name]:.1f})" if name in base else ""
        lines.append(f"    {name:<26}{idle.get(name, 0.0):8.1f}{baseline}")
    lines.append(f"  operator RSS                {result.operator_rss_mib:8.1f} MiB")
    return "\n".join(lines)


# -- the set case (issue 21) -----------------------------------------------------------------------

SET_NAME = "fleet"
TENANT_LABEL = "pgwarden.io/bench-tenant"
# The set's Jobs get a node selector no node has: their Pods stay Pending, and the bench completes each Job
# through its status subresource, as kwok's fake nodes would. What is measured is the operator, not the node.
NOWHERE = {"pgwarden.io/bench": "nowhere"}


def tenant_secret(index: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"tenant-{index:04d}-db", "labels": {TENANT_LABEL: "true"}},
        "stringData": {"uri": f"postgresql://tenant:never-used@127.0.0.1:5432/tenant_{index:04d}"},
    }


def migration_set(max_parallel: int) -> Obj:
    return {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseMigrationSet",
        "metadata": {"name": SET_NAME},
        "spec": {
            "targets": {"selector": {"matchLabels": {TENANT_LABEL: "true"}}},
            "rollout": {"canary": 1, "maxParallel": max_parallel, "maxFailures": 1},
            "template": {
                "migrations": {"inline": [{"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"}]},
                "jobTemplate": {"nodeSelector": NOWHERE},
            },
        },
    }


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class JobCompleter(threading.Thread):
    """Marks each Job of a namespace Complete (SuccessCriteriaMet, then Complete, as the Job controller writes
    them) once it has existed `seconds`: a fake node whose Pods all succeed."""

    def __init__(self, namespace: str, seconds: float) -> None:
        super().__init__(name="job-completer", daemon=True)
        self.namespace, self.seconds = namespace, seconds
        self.done: dict[str, float] = {}  # Job -> when it was completed (Unix time)
        self.stopped = threading.Event()
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(KUBECONFIG), client_configuration=configuration)
        self.batch = kubernetes.client.BatchV1Api(kubernetes.client.ApiClient(configuration))

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            # The JSON as sent: the client's models take seconds to build for hundreds of Jobs.
            answer = self.batch.list_namespaced_job(self.namespace, _preload_content=False)
            for job in json.loads(answer.data)["items"]:
                name, created = job["metadata"]["name"], stamp(job["metadata"]["creationTimestamp"])
                # A finished Job needs the startTime the Job controller sets once it made the Pod.
                started = bool((job.get("status") or {}).get("startTime"))
                if name not in self.done and started and time.time() - created >= self.seconds:
                    try:
                        self.complete(name)
                    except kubernetes.client.ApiException as error:  # the controller wrote it meanwhile
                        print(f"job-completer: {name}: {error.reason}", file=sys.stderr)

    def complete(self, name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now, "lastProbeTime": now}
            for kind in ("SuccessCriteriaMet", "Complete")
        ]
        status = {"completionTime": now, "succeeded": 1, "active": 0, "ready": 0, "conditions": conditions}
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status})
        self.done[name] = time.time()


@dataclass
class SetResult:
    targets: int
    max_parallel: int
    workers: int
    job_seconds: float
    children_seconds: float = 0.0  # set created -> last child created (their creationTimestamps)
    children_seen_seconds: float = 0.0  # when the bench's polling saw them all
    complete_seconds: float = 0.0  # set created -> Complete (its condition)
    complete_after_jobs_seconds: float = 0.0  # the last Job completed -> the set Complete
    idle_seconds: float = 0.0
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    baseline_cpu_percent: dict[str, float] = field(default_factory=dict)
    operator_rss_mib: float = 0.0


def set_status(kubectl: Kubectl, namespace: str) -> Obj:
    return dict(
        json.loads(kubectl("get", "dbmigset", SET_NAME, "-n", namespace, "-o", "json")).get("status") or {}
    )


def count(kubectl: Kubectl, kind: str, namespace: str) -> int:
    return len(kubectl("get", kind, "-n", namespace, "-o", "name").split())


def until_complete(
    kubectl: Kubectl, namespace: str, created: float, completer: JobCompleter, timeout: float
) -> tuple[float, float]:
    """(seconds from the set's creation until Complete, seconds from the last Job done until the bench saw it)."""
    wait_until(
        "the set Complete",
        lambda: set_status(kubectl, namespace).get("phase") in ("Complete", "Halted"),
        timeout,
        interval=1,
    )
    seen_complete = time.time()
    status = set_status(kubectl, namespace)
    if status["phase"] != "Complete":
        raise SystemExit(f"the set halted: {status.get('message')}")
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    # The last Job to the bench's own clock: the condition's time has whole seconds only.
    return (
        round(stamp(complete["lastTransitionTime"]) - created, 1),
        round(seen_complete - max(completer.done.values()), 1),
    )


def run_set(args: argparse.Namespace, kubectl: Kubectl, job_image: str) -> SetResult:
    result = SetResult(
        targets=args.targets,
        max_parallel=args.max_parallel,
        workers=args.workers,
        job_seconds=args.job_seconds,
    )
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pgwarden-bench",
        "-f",
        str(REPO / "crds"),
    )
    namespace = f"bench-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    log = LOCAL / f"{namespace}-operator.log"
    plane = {name: component_pid(name) for name in ("kube-apiserver", "etcd")}

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    tenants = [
        dict(tenant_secret(i), metadata=dict(tenant_secret(i)["metadata"], namespace=namespace))
        for i in range(args.targets)
    ]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": tenants}))
    say(f"namespace {namespace}: {args.targets} tenant Secrets; baseline CPU over {args.baseline_seconds:g}s")
    result.baseline_cpu_percent = cpu_percent(plane, args.baseline_seconds) if args.baseline_seconds else {}
    operator = start_operator(namespace, args.workers, job_image, log)
    completer = JobCompleter(namespace, args.job_seconds)
    completer.start()
    try:
        time.sleep(3)  # kopf's start-up (login, watches) is not what is measured
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited; log: {log}")
        manifest = migration_set(args.max_parallel)
        manifest["metadata"]["namespace"] = namespace
        say(f"applying one DatabaseMigrationSet over {args.targets} Secrets, {args.max_parallel} at once")
        started = time.monotonic()
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_until(
            "every child",
            lambda: count(kubectl, "databasemigrations", namespace) >= args.targets,
            args.timeout,
        )
        result.children_seen_seconds = round(time.monotonic() - started, 1)
        made = json.loads(kubectl("get", "dbmigset", SET_NAME, "-n", namespace, "-o", "json"))["metadata"]
        children = kubectl.items("databasemigrations", namespace)
        last_child = max(stamp(child["metadata"]["creationTimestamp"]) for child in children)
        result.children_seconds = round(last_child - stamp(made["creationTimestamp"]), 1)
        say(
            f"every child exists after {result.children_seconds}s; rolling out, each Job done after {args.job_seconds:g}s"
        )
        result.complete_seconds, result.complete_after_jobs_seconds = until_complete(
            kubectl, namespace, stamp(made["creationTimestamp"]), completer, args.timeout
        )
        say(f"Complete after {result.complete_seconds}s; idle CPU over {args.idle_seconds:g}s")
        completer.stopped.set()
        result.idle_seconds = args.idle_seconds
        result.idle_cpu_percent = cpu_percent({"operator": operator.pid, **plane}, args.idle_seconds)
        result.operator_rss_mib = round(rss_mib(operator.pid), 1)
    finally:
        completer.stopped.set()
        stop(operator)
        kubectl("delete", "namespace", namespace, "--wait=false")
    return result


def report_set(result: SetResult) -> str:
    idle, base = result.idle_cpu_percent, result.baseline_cpu_percent
    lines = [
        f"operator scale, set case: one DatabaseMigrationSet over {result.targets} Secrets, "
        f"{result.max_parallel} at once, {result.workers} workers",
        f"  every child exists          {result.children_seconds:8.1f} s  (set created -> last child created; "
        f"the polling saw it at {result.children_seen_seconds:.1f} s)",
        f"  set Complete                {result.complete_seconds:8.1f} s  (set created -> Complete; each Job done "
        f"{result.job_seconds:g} s after it was created, by the bench)",
        f"  Complete after the last Job {result.complete_after_jobs_seconds:8.1f} s  (last Job completed -> the bench "
        "saw the set Complete, polling each second)",
        f"  idle CPU over {result.idle_seconds:g} s (% of a core; baseline without operator)",
    ]
    for name in ("operator", "kube-apiserver", "etcd"):
        baseline = f"  (baseline {base[name]:.1f})" if name in base else ""
        lines.append(f"    {name:<26}{idle.get(name, 0.0):8.1f}{baseline}")
    lines.append(f"  operator RSS                {result.operator_rss_mib:8.1f} MiB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=300, help="scheduled DatabaseBackups (default 300)")
    parser.add_argument("--migrations", type=int, default=30, help="one-time DatabaseMigrations (default 30)")
    parser.add_argument(
        "--workers", type=int, default=8, help="the operator's --workers (default 8, its default)"
    )
    parser.add_argument("--idle-seconds", type=float, default=60, help="idle CPU window (default 60)")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="baseline window (default 20)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up converging or deleting after")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a control plane this run started")
    parser.add_argument(
        "--job-image",
        help="image of the migrations' Jobs (default: the one hack/cluster-up.sh loaded onto the node)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--set", action="store_true", help="the set case: one DatabaseMigrationSet (issue 21)"
    )
    parser.add_argument("--targets", type=int, default=300, help="the set case's Secrets (default 300)")
    parser.add_argument(
        "--max-parallel", type=int, default=25, help="the set's rollout.maxParallel (default 25)"
    )
    parser.add_argument(
        "--job-seconds", type=float, default=2, help="the set case: each Job is done after (default 2)"
    )
    args = parser.parse_args()
    with control_plane(args.keep_cluster) as plane:
        if args.set:
            outcome = run_set(args, Kubectl(plane.kubectl), args.job_image or plane.image)
            print(json.dumps(asdict(outcome), indent=1) if args.json else report_set(outcome))
            return 0
        result = run(args, Kubectl(plane.kubectl), args.job_image or plane.image)
    print(json.dumps(asdict(result), indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
