"""Benchmark: how the operator keeps up with many resources on the local control plane (issues 10, 21, 22).

Applies N scheduled DatabaseBackups and M one-time DatabaseMigrations in a fresh namespace, none of which
does database work (the Secrets they name do not exist: backups only get their CronJob, migrations' Jobs
run and end), and measures what a platform team feels, each beside a baseline measured in the same run:

- apply to Ready: from the apply until every backup is Scheduled with its CronJob and every migration has
  a final phase (seen by a watch, not by listing thousands of objects), beside the same apply of N + M
  ConfigMaps, which no operator acts on: the API server's own floor;
- idle CPU over --idle-seconds (default 60), from /proc/<pid>/stat, of the operator, kube-apiserver and etcd,
  beside the same control plane before the operator started; and the operator's RSS;
- delete to gone: from one DELETE of each collection until the resources and everything they own (CronJobs,
  Jobs, Pods) are gone, beside the same delete of the ConfigMaps; with kube-controller-manager's garbage
  collector's queue and its client-side throttling over that time, from its own /metrics.

With --kwok the migrations' Pods run on kwok's fake nodes (hack/build-kwok.sh), which run every Job's Pod to
completion without a container: the way to 10,000 resources and their Jobs on one small machine.

    .venv/bin/python bench/operator_scale.py                      # 300 backups, 30 migrations
    .venv/bin/python bench/operator_scale.py -n 1000 --migrations 100
    .venv/bin/python bench/operator_scale.py -n 10000 --migrations 1000 --kwok

With --set, one DatabaseMigrationSet over --targets Secrets (default 300) instead, rolled out canary first
then --max-parallel at once, its Jobs run by kwok's fake nodes: the time until every child DatabaseMigration
exists, the time from the last Job done until the set is Complete, and the operator's idle CPU and RSS:

    .venv/bin/python bench/operator_scale.py --set --targets 1000 --max-parallel 50

Every run prints the machine's core count and load before and after. Starts the control plane with
hack/cluster-up.sh when it is not up (and stops it afterwards unless --keep-cluster), sharing it with
cluster test runs the way tests/cluster/conftest.py does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import kwok
import machine
from scale_support import (
    KUBECONFIG,
    LOCAL,
    REPO,
    Api,
    Kubectl,
    Obj,
    PhaseWatch,
    component_pid,
    control_plane,
    cpu_percent,
    kcm_metrics,
    rss_mib,
    stamp,
    start_operator,
    stop,
    wait_until,
)

FINAL = frozenset({"Succeeded", "Failed", "RolledBack", "Cancelled"})
OWNED = ("cronjobs", "jobs", "pods")

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


def migration(name: str, on_kwok: bool) -> Obj:
    spec: Obj = {
        "database": {"secretRef": {"name": "no-such-db"}},
        "migrations": {"inline": [{"name": "0001_t.sql", "sql": "CREATE TABLE t (id int);"}]},
    }
    if on_kwok:
        spec["jobTemplate"] = kwok.job_template()
    return {
        "apiVersion": "pgwarden.io/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name},
        "spec": spec,
    }


def config_map(name: str) -> Obj:
    """The baseline's object: about the size of a DatabaseBackup, and nothing acts on it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"x": "y" * 300}}


def apply(kubectl: Kubectl, items: list[Obj], parallel: int) -> float:
    """Seconds to server-side apply `items`, in `parallel` kubectl processes (one PATCH per object each):
    how a GitOps tool or a script applies a fleet; one kubectl alone is the floor of everything after."""
    chunks = [items[index::parallel] for index in range(parallel)]
    started = time.monotonic()

    def one(chunk: list[Obj]) -> str:
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk})
        return kubectl(
            "apply",
            "--server-side",
            "--field-manager=pgwarden-bench",
            "-f",
            "-",
            input=manifest,
            timeout=1800,
        )

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, [chunk for chunk in chunks if chunk]))
    return round(time.monotonic() - started, 1)


def with_namespace(items: list[Obj], namespace: str) -> list[Obj]:
    for item in items:
        item["metadata"]["namespace"] = namespace
    return items


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    backups: int
    migrations: int
    workers: int
    kwok: bool
    apply_parallel: int
    machine_before: str = ""
    machine_after: str = ""
    apply_seconds: float = 0.0  # the apply itself: every resource created
    baseline_apply_seconds: float = 0.0  # the same count of ConfigMaps, applied the same way
    backups_ready_seconds: float = 0.0  # apply -> the last backup Ready (its condition, whole seconds)
    converge_seconds: float = 0.0  # apply -> every backup Scheduled and every migration final (watched)
    idle_seconds: float = 0.0
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    baseline_cpu_percent: dict[str, float] = field(default_factory=dict)
    operator_rss_mib: float = 0.0
    delete_seconds: float = 0.0  # DELETE of the collections -> they and all they own gone
    baseline_delete_seconds: float = 0.0  # the same DELETE of the ConfigMaps -> gone
    gone_after_seconds: dict[str, float] = field(default_factory=dict)  # each kind, since the DELETE
    collector: dict[str, float] = field(default_factory=dict)  # kube-controller-manager over the delete


def baseline(args: argparse.Namespace, kubectl: Kubectl, api: Api, namespace: str, result: Result) -> None:
    """The API server's own floor, in this run: apply and delete as many ConfigMaps the same ways."""
    count = args.n + args.migrations
    items = with_namespace([config_map(f"c{i:05d}") for i in range(count)], namespace)
    result.baseline_apply_seconds = apply(kubectl, items, args.apply_parallel)
    started = time.monotonic()
    api.delete_all("configmaps", namespace)
    # kube-root-ca.crt comes back at once: the root CA's publisher makes it in every namespace.
    wait_until("the ConfigMaps gone", lambda: api.count("configmaps", namespace) <= 1, args.timeout, 0.5)
    result.baseline_delete_seconds = round(time.monotonic() - started, 1)


def converge(args: argparse.Namespace, kubectl: Kubectl, api: Api, namespace: str, result: Result) -> None:
    backups, migrations = (
        PhaseWatch(api, "databasebackups", namespace),
        PhaseWatch(api, "databasemigrations", namespace),
    )
    backups.expect(frozenset({"Scheduled"}))
    migrations.expect(FINAL)
    backups.start()
    migrations.start()
    items = [backup(f"b{i:05d}") for i in range(args.n)]
    items += [migration(f"m{i:05d}", args.kwok) for i in range(args.migrations)]
    wall, started = time.time(), time.monotonic()
    result.apply_seconds = apply(kubectl, with_namespace(items, namespace), args.apply_parallel)
    wait_until("every backup Scheduled", lambda: backups.done(args.n), args.timeout, 0.5)
    wait_until("every migration final", lambda: migrations.done(args.migrations), args.timeout, 0.5)
    last = max(backups.last(), migrations.last() if args.migrations else 0.0)
    result.converge_seconds = round(last - started, 1)
    backups.stopped.set()
    migrations.stopped.set()
    ready = [
        stamp(str(c["lastTransitionTime"])) + 1
        for b in api.list("databasebackups", namespace)
        for c in (b.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "True"
    ]
    result.backups_ready_seconds = round(max(ready) - wall, 1)
    cronjobs = api.count("cronjobs", namespace)
    if cronjobs < args.n:
        raise SystemExit(f"{args.n} backups Scheduled but only {cronjobs} CronJobs")


def delete(args: argparse.Namespace, api: Api, namespace: str, result: Result) -> None:
    """DELETE each collection, then wait until the resources and what they own are gone."""
    before = kcm_metrics()
    started = time.monotonic()
    for kind in ("databasebackups", "databasemigrations"):
        api.delete_all(kind, namespace)
    gone: dict[str, float] = {}
    kinds = ("databasebackups", "databasemigrations", *OWNED)

    def check() -> bool:
        for kind in kinds:
            if kind not in gone and api.count(kind, namespace) == 0:
                gone[kind] = round(time.monotonic() - started, 1)
        return len(gone) == len(kinds)

    wait_until("deletion", check, args.timeout, 0.5)
    result.delete_seconds = max(gone.values())
    result.gone_after_seconds = gone
    after = kcm_metrics()
    result.collector = {
        "attempt_to_delete": after.get("gc_attempt_to_delete", 0) - before.get("gc_attempt_to_delete", 0),
        "throttled_seconds": round(after["throttled_seconds"] - before["throttled_seconds"], 1),
        "requests": after["requests"] - before["requests"],
    }


def run(args: argparse.Namespace, kubectl: Kubectl, job_image: str) -> Result:
    result = Result(args.n, args.migrations, args.workers, args.kwok, args.apply_parallel, machine.describe())
    api = Api()
    namespace = new_namespace(kubectl)
    plane = {name: component_pid(name) for name in ("kube-apiserver", "etcd")}
    say = sayer(args)
    say(f"namespace {namespace}; baseline: {args.n + args.migrations} ConfigMaps applied and deleted")
    baseline(args, kubectl, api, namespace, result)
    say(f"baseline CPU of the control plane over {args.baseline_seconds:g}s")
    result.baseline_cpu_percent = cpu_percent(plane, args.baseline_seconds) if args.baseline_seconds else {}
    operator = start_operator(namespace, args.workers, job_image, LOCAL / f"{namespace}-operator.log")
    try:
        time.sleep(3)  # kopf's start-up (login, watches) is not what is measured
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited; log: {LOCAL / f'{namespace}-operator.log'}")
        say(f"applying {args.n} scheduled DatabaseBackups and {args.migrations} DatabaseMigrations")
        converge(args, kubectl, api, namespace, result)
        say(f"converged in {result.converge_seconds}s; idle CPU over {args.idle_seconds:g}s")
        result.idle_seconds = args.idle_seconds
        result.idle_cpu_percent = cpu_percent({"operator": operator.pid, **plane}, args.idle_seconds)
        result.operator_rss_mib = round(rss_mib(operator.pid), 1)
        say("deleting")
        delete(args, api, namespace, result)
    finally:
        stop(operator)
        kubectl("delete", "namespace", namespace, "--wait=false")
    result.machine_after = machine.describe()
    return result


def new_namespace(kubectl: Kubectl) -> str:
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
    return namespace


def sayer(args: argparse.Namespace) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    return say


def ratio(value: float, base: float) -> str:
    return f"{value / base:5.1f}x" if base > 0 else "    -"


def cpu_lines(idle: dict[str, float], base: dict[str, float], seconds: float) -> list[str]:
    lines = [f"  idle CPU over {seconds:g} s, % of a core        now  baseline  above it"]
    for name in ("operator", "kube-apiserver", "etcd"):
        if name in base:
            lines.append(
                f"    {name:<34}{idle.get(name, 0.0):6.1f}  {base[name]:8.1f}  {idle.get(name, 0.0) - base[name]:+8.1f}"
            )
        else:
            lines.append(f"    {name:<34}{idle.get(name, 0.0):6.1f}")
    return lines


def report(result: Result) -> str:
    gone = ", ".join(f"{kind} {seconds:g}" for kind, seconds in result.gone_after_seconds.items())
    collector = result.collector
    lines = [
        f"operator scale: {result.backups} scheduled DatabaseBackups, {result.migrations} DatabaseMigrations"
        f"{' (Jobs on kwok)' if result.kwok else ''}, {result.workers} workers; apply in {result.apply_parallel}",
        f"  {result.machine_before}",
        "                                       seconds  baseline  ratio",
        f"  apply itself                        {result.apply_seconds:8.1f}  {result.baseline_apply_seconds:8.1f}  "
        f"{ratio(result.apply_seconds, result.baseline_apply_seconds)}  (baseline: as many ConfigMaps)",
        f"  apply to Ready: backups             {result.backups_ready_seconds:8.1f}  {result.baseline_apply_seconds:8.1f}  "
        f"{ratio(result.backups_ready_seconds, result.baseline_apply_seconds)}  (the last Ready condition)",
        f"  apply to converged: all             {result.converge_seconds:8.1f}  {result.baseline_apply_seconds:8.1f}  "
        f"{ratio(result.converge_seconds, result.baseline_apply_seconds)}  (every backup Scheduled, migration final)",
        f"  delete to gone                      {result.delete_seconds:8.1f}  {result.baseline_delete_seconds:8.1f}  "
        f"{ratio(result.delete_seconds, result.baseline_delete_seconds)}  (baseline: the ConfigMaps)",
        f"    gone after: {gone}",
        f"    kube-controller-manager meanwhile: {collector.get('attempt_to_delete', 0):.0f} garbage collector "
        f"looks, {collector.get('requests', 0):.0f} requests, {collector.get('throttled_seconds', 0):g} s "
        "waiting on its client-side rate limit",
        *cpu_lines(result.idle_cpu_percent, result.baseline_cpu_percent, result.idle_seconds),
        f"  operator RSS                        {result.operator_rss_mib:8.1f} MiB",
        f"  {result.machine_after}",
    ]
    return "\n".join(lines)


# -- the set case (issue 21) -----------------------------------------------------------------------

SET_NAME = "fleet"
TENANT_LABEL = "pgwarden.io/bench-tenant"


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
                "jobTemplate": kwok.job_template(),
            },
        },
    }


@dataclass
class SetResult:
    targets: int
    max_parallel: int
    workers: int
    machine_before: str = ""
    machine_after: str = ""
    baseline_apply_seconds: float = 0.0  # as many ConfigMaps applied: the API server's floor for the children
    children_seconds: float = 0.0  # set created -> last child created (their creationTimestamps)
    complete_seconds: float = 0.0  # set created -> Complete (its condition)
    complete_after_jobs_seconds: float = (
        0.0  # the last Job completed (its completionTime) -> the set Complete
    )
    idle_seconds: float = 0.0
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    baseline_cpu_percent: dict[str, float] = field(default_factory=dict)
    operator_rss_mib: float = 0.0


def set_status(kubectl: Kubectl, namespace: str) -> Obj:
    return dict(
        json.loads(kubectl("get", "dbmigset", SET_NAME, "-n", namespace, "-o", "json")).get("status") or {}
    )


def until_complete(
    kubectl: Kubectl, api: Api, namespace: str, created: float, timeout: float
) -> tuple[float, float]:
    """(seconds from the set's creation until Complete, from the last Job's completion until Complete)."""
    wait_until(
        "the set Complete",
        lambda: set_status(kubectl, namespace).get("phase") in ("Complete", "Halted"),
        timeout,
        interval=1,
    )
    status = set_status(kubectl, namespace)
    if status["phase"] != "Complete":
        raise SystemExit(f"the set halted: {status.get('message')}")
    complete = stamp(next(c for c in status["conditions"] if c["type"] == "Complete")["lastTransitionTime"])
    last_job = max(stamp(job["status"]["completionTime"]) for job in api.list("jobs", namespace))
    return round(complete - created, 1), round(complete - last_job, 1)


def run_set(args: argparse.Namespace, kubectl: Kubectl, job_image: str) -> SetResult:
    result = SetResult(args.targets, args.max_parallel, args.workers, machine.describe())
    api = Api()
    namespace = new_namespace(kubectl)
    plane = {name: component_pid(name) for name in ("kube-apiserver", "etcd")}
    say = sayer(args)
    configs = with_namespace([config_map(f"c{i:05d}") for i in range(args.targets)], namespace)
    result.baseline_apply_seconds = apply(kubectl, configs, args.apply_parallel)
    tenants = with_namespace([tenant_secret(i) for i in range(args.targets)], namespace)
    apply(kubectl, tenants, args.apply_parallel)
    say(f"namespace {namespace}: {args.targets} tenant Secrets; baseline CPU over {args.baseline_seconds:g}s")
    result.baseline_cpu_percent = cpu_percent(plane, args.baseline_seconds) if args.baseline_seconds else {}
    operator = start_operator(namespace, args.workers, job_image, LOCAL / f"{namespace}-operator.log")
    try:
        time.sleep(3)  # kopf's start-up (login, watches) is not what is measured
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited; log: {LOCAL / f'{namespace}-operator.log'}")
        say(f"applying one DatabaseMigrationSet over {args.targets} Secrets, {args.max_parallel} at once")
        kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(with_namespace([migration_set(args.max_parallel)], namespace)[0]),
        )
        wait_until(
            "every child", lambda: api.count("databasemigrations", namespace) >= args.targets, args.timeout
        )
        made = stamp(
            json.loads(kubectl("get", "dbmigset", SET_NAME, "-n", namespace, "-o", "json"))["metadata"][
                "creationTimestamp"
            ]
        )
        children = api.list("databasemigrations", namespace)
        result.children_seconds = round(
            max(stamp(c["metadata"]["creationTimestamp"]) for c in children) - made, 1
        )
        say(f"every child exists after {result.children_seconds}s; rolling out on kwok's nodes")
        result.complete_seconds, result.complete_after_jobs_seconds = until_complete(
            kubectl, api, namespace, made, args.timeout
        )
        say(f"Complete after {result.complete_seconds}s; idle CPU over {args.idle_seconds:g}s")
        result.idle_seconds = args.idle_seconds
        result.idle_cpu_percent = cpu_percent({"operator": operator.pid, **plane}, args.idle_seconds)
        result.operator_rss_mib = round(rss_mib(operator.pid), 1)
    finally:
        stop(operator)
        kubectl("delete", "namespace", namespace, "--wait=false")
    result.machine_after = machine.describe()
    return result


def report_set(result: SetResult) -> str:
    lines = [
        f"operator scale, set case: one DatabaseMigrationSet over {result.targets} Secrets, "
        f"{result.max_parallel} at once, {result.workers} workers, Jobs on kwok",
        f"  {result.machine_before}",
        "                                       seconds  baseline  ratio",
        f"  every child exists                  {result.children_seconds:8.1f}  {result.baseline_apply_seconds:8.1f}  "
        f"{ratio(result.children_seconds, result.baseline_apply_seconds)}  (baseline: as many ConfigMaps applied)",
        f"  set Complete                        {result.complete_seconds:8.1f}",
        f"  Complete after the last Job         {result.complete_after_jobs_seconds:8.1f}  (whole seconds)",
        *cpu_lines(result.idle_cpu_percent, result.baseline_cpu_percent, result.idle_seconds),
        f"  operator RSS                        {result.operator_rss_mib:8.1f} MiB",
        f"  {result.machine_after}",
    ]
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=300, help="scheduled DatabaseBackups (default 300)")
    parser.add_argument("--migrations", type=int, default=30, help="one-time DatabaseMigrations (default 30)")
    parser.add_argument(
        "--workers", type=int, default=8, help="the operator's --workers (default 8, its default)"
    )
    parser.add_argument("--kwok", action="store_true", help="the migrations' Pods run on kwok's fake nodes")
    parser.add_argument(
        "--apply-parallel", type=int, default=4, help="kubectl processes applying (default 4)"
    )
    parser.add_argument("--idle-seconds", type=float, default=60, help="idle CPU window (default 60)")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="baseline window (default 20)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up converging or deleting after")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a control plane this run started")
    parser.add_argument("--job-image", help="image of the Jobs (default: the one hack/cluster-up.sh loaded)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--set", action="store_true", help="the set case: one DatabaseMigrationSet (issue 21)"
    )
    parser.add_argument("--targets", type=int, default=300, help="the set case's Secrets (default 300)")
    parser.add_argument(
        "--max-parallel", type=int, default=25, help="the set's rollout.maxParallel (default 25)"
    )
    return parser.parse_args()


def main() -> int:
    args = arguments()
    with control_plane(args.keep_cluster) as plane:
        kubectl = Kubectl(plane.kubectl)
        image = args.job_image or plane.image
        uses_kwok = args.set or args.kwok
        nodes = (
            kwok.fake_nodes(kubectl, KUBECONFIG, LOCAL / "kwok") if uses_kwok else contextlib.nullcontext()
        )
        with nodes:
            outcome: Any = run_set(args, kubectl, image) if args.set else run(args, kubectl, image)
    print(
        json.dumps(asdict(outcome), indent=1) if args.json else (report_set if args.set else report)(outcome)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
