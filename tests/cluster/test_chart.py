"""The Helm chart, rendered by a real helm (built from its Go module) and checked by the local API server.

Rendering needs no cluster; the dry-run applies and the permission checks use the local control plane.
The ServiceMonitor is rendered but never applied: its CRD (Prometheus Operator) is not on that cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from pgwarden.console import build_parser

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pgwarden"
RELEASE_NAMESPACE = "pgwarden-system"
Manifest = dict[str, Any]

# The first helm build takes minutes on 2 cores, and that counts against the first test's timeout.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def helm() -> Path:
    build = subprocess.run(
        [str(REPO / "hack" / "build-helm.sh")], capture_output=True, text=True, timeout=1700, check=False
    )
    if build.returncode != 0:
        pytest.fail(
            f"hack/build-helm.sh failed (exit {build.returncode}):\n{build.stderr[-4000:]}", pytrace=False
        )
    return Path(build.stdout.strip().splitlines()[-1])


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def render(
    helm: Path,
    *settings: str,
    release: str = "pgwarden",
    namespace: str = RELEASE_NAMESPACE,
    include_crds: bool = False,
) -> list[Manifest]:
    """`helm template` with `--set` settings, as parsed manifests."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    for setting in settings:
        args += ["--set", setting]
    return [doc for doc in yaml.safe_load_all(run_helm(helm, *args).stdout) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def operator_accounts(manifests: list[Manifest]) -> list[Manifest]:
    """The operator's ServiceAccount (not the Jobs' one, which the chart makes per watched namespace)."""
    return [m for m in of_kind(manifests, "ServiceAccount") if component(m) != "job"]


def component(manifest: Manifest) -> str | None:
    return manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def operator_roles(manifests: list[Manifest]) -> list[Manifest]:
    """The operator's own ClusterRole/Roles (not the aggregated user-facing ClusterRoles)."""
    return [
        m
        for m in manifests
        if m["kind"] in ("ClusterRole", "Role")
        and not any(k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in m["metadata"]["labels"])
    ]


def operator_container(manifests: list[Manifest]) -> Manifest:
    (deployment,) = of_kind(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


NAMESPACED = ("rbac.clusterWide=false", "watchNamespaces={shop,billing}")


# -- lint and render -------------------------------------------------------------------------------


def test_helm_lint_passes_strictly(helm: Path) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--set",
        ",".join(NAMESPACED),
        "--set",
        "serviceMonitor.enabled=true",
    )


def test_default_render_is_one_recreated_replica_probed_on_the_operator_health_endpoint(helm: Path) -> None:
    manifests = render(helm)
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(manifests)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    # The arguments are the operator's own command line, and they agree with the probes and the Service.
    args = build_parser().parse_args(container["args"])
    assert args.command == "operator"
    assert args.namespace == [], "default: all namespaces"
    assert args.liveness_port == ports["health"] == 8080
    assert args.metrics_port == ports["metrics"] == 9090
    (service,) = of_kind(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not of_kind(manifests, "ServiceMonitor")


def test_replica_count_sets_the_replicas_and_each_knows_its_pod_and_namespace(helm: Path) -> None:
    manifests = render(helm, "replicaCount=2", namespace="operators")
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in operator_container(manifests)["env"]}
    # Leader election names the Lease holder by Pod and keeps the Lease in the Pod's namespace.
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_jobs_use_the_operator_image_unless_told_otherwise(helm: Path) -> None:
    container = operator_container(render(helm, "image.tag=1.2.3"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "ghcr.io/pgwarden/pgwarden:1.2.3"
    assert env["PGWARDEN_JOB_IMAGE"] == container["image"]
    container = operator_container(render(helm, "jobImage=registry.example/pgwarden-jobs:9"))
    assert {e["name"]: e.get("value") for e in container["env"]}[
        "PGWARDEN_JOB_IMAGE"
    ] == "registry.example/pgwarden-jobs:9"


def test_the_operator_pod_meets_the_restricted_pod_security_standard(helm: Path) -> None:
    manifests = render(helm)
    pod = of_kind(manifests, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(manifests)["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["readOnlyRootFilesystem"] is True


def test_scheduling_values_reach_the_pod(helm: Path) -> None:
    manifests = render(
        helm,
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    )
    pod = of_kind(manifests, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "nodeAffinity" in pod["affinity"]


LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["pgwarden-operator"],
        "verbs": ["get", "update"],
    },
]


def test_cluster_wide_rbac_is_one_cluster_role_bound_to_the_service_account(helm: Path) -> None:
    manifests = render(helm)
    (role,) = of_kind(operator_roles(manifests), "ClusterRole")
    (binding,) = of_kind(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (account,) = operator_accounts(manifests)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NAMESPACE}
    ]
    (lease,) = of_kind(manifests, "Role")  # leader election only, in the operator's own namespace
    assert lease["metadata"]["namespace"] == RELEASE_NAMESPACE and lease["rules"] == LEASE_RULES


def test_namespaced_rbac_is_a_role_in_each_watched_namespace_and_the_operator_watches_only_them(
    helm: Path,
) -> None:
    manifests = render(helm, *NAMESPACED)
    roles = operator_roles(manifests)
    assert sorted((r["kind"], r["metadata"]["namespace"]) for r in roles) == [
        ("Role", "billing"),
        ("Role", RELEASE_NAMESPACE),  # leader election: the Lease in the operator's own namespace
        ("Role", "shop"),
    ]
    bindings = of_kind(manifests, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", RELEASE_NAMESPACE, "shop"]
    assert not of_kind(manifests, "ClusterRoleBinding")
    assert build_parser().parse_args(operator_container(manifests)["args"]).namespace == ["shop", "billing"]


def test_namespaced_rbac_without_namespaces_is_refused_with_what_to_set(helm: Path) -> None:
    result = run_helm(
        helm, "template", "pgwarden", str(CHART), "--set", "rbac.clusterWide=false", check=False
    )
    assert result.returncode != 0
    assert "watchNamespaces" in result.stderr


def test_service_monitor_renders_when_enabled(helm: Path) -> None:
    manifests = render(helm, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=prometheus")
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (service,) = of_kind(manifests, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_metrics_can_be_switched_off(helm: Path) -> None:
    manifests = render(helm, "metrics.enabled=false")
    assert not of_kind(manifests, "Service")
    assert build_parser().parse_args(operator_container(manifests)["args"]).metrics_port == 0


@pytest.mark.parametrize("settings", [(), NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_rendered_rbac_grants_no_access_to_secrets_and_no_wildcards(
    helm: Path, settings: tuple[str, ...]
) -> None:
    rules = [
        rule for m in render(helm, *settings) if m["kind"] in ("ClusterRole", "Role") for rule in m["rules"]
    ]
    assert rules
    for rule in rules:
        assert "secrets" not in rule.get("resources", []), rule
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), rule
        assert "nonResourceURLs" not in rule, rule


def test_operator_rules_are_exactly_what_the_operator_uses(helm: Path) -> None:
    """A new permission is a decision: update this list, and the RBAC table in the chart's README."""
    (role,) = of_kind(operator_roles(render(helm)), "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    kinds = (
        "databasemigrations",
        "databasebackups",
        "databaserestores",
        "databasemigrationsets",
        "databasebackupsets",
    )
    expected = {("pgwarden.io", k, v) for k in kinds for v in ("get", "list", "watch", "patch")}
    expected |= {("pgwarden.io", f"{k}/status", v) for k in kinds for v in ("get", "patch")}
    # A set's children: created per target, deleted when their Secret is no longer a target.
    expected |= {
        ("pgwarden.io", k, v) for k in ("databasemigrations", "databasebackups") for v in ("create", "delete")
    }
    expected |= {("batch", "jobs", v) for v in ("create", "get", "list", "watch")}
    expected |= {("batch", "cronjobs", v) for v in ("create", "get", "list", "watch", "patch", "delete")}
    expected |= {("", "pods", v) for v in ("get", "list")}
    expected |= {("", "events", v) for v in ("create", "patch")}
    expected |= {("", "configmaps", "get")}  # migration files, to show and approve their checksums
    expected |= {("", "pods/log", "get")}  # a running migration's progress line, for status.progress
    assert granted == expected


@pytest.mark.parametrize("settings", [(), NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_sets_select_secrets_grants_list_and_watch_on_secrets_and_nothing_more(
    helm: Path, settings: tuple[str, ...]
) -> None:
    """Only with sets.selectSecrets, and only what listing and watching their names needs: never get."""
    roles = [
        m for m in render(helm, *settings, "sets.selectSecrets=true") if m["kind"] in ("ClusterRole", "Role")
    ]
    granted = {
        (verb, m["metadata"].get("namespace"))
        for m in roles
        for rule in m["rules"]
        if "secrets" in rule.get("resources", [])
        for verb in rule["verbs"]
    }
    operator_roles_with_secrets = {namespace for _, namespace in granted}
    assert {verb for verb, _ in granted} == {"list", "watch"}
    if settings:
        assert operator_roles_with_secrets == {"shop", "billing"}, "the watched namespaces only"
    for rule in (r for m in roles for r in m["rules"] if "secrets" in r.get("resources", [])):
        assert rule["apiGroups"] == [""] and rule["resources"] == ["secrets"] and "resourceNames" not in rule


def test_a_namespace_both_watched_and_the_operators_own_has_one_role_with_the_lease_rules(helm: Path) -> None:
    manifests = render(helm, "rbac.clusterWide=false", f"watchNamespaces={{shop,{RELEASE_NAMESPACE}}}")
    roles = {r["metadata"]["namespace"]: r["rules"] for r in operator_roles(manifests)}
    assert sorted(roles) == [RELEASE_NAMESPACE, "shop"]
    assert roles[RELEASE_NAMESPACE][-2:] == LEASE_RULES
    assert not any(rule["apiGroups"] == ["coordination.k8s.io"] for rule in roles["shop"])


# -- against the local API server ------------------------------------------------------------------


@pytest.fixture
def extra_namespaces(kube: LocalCluster) -> Iterator[tuple[str, str]]:
    suffix = secrets.token_hex(3)
    names = (f"chart-shop-{suffix}", f"chart-billing-{suffix}")
    for name in names:
        kube.kubectl("create", "namespace", name)
    yield names
    for name in names:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def dry_run_apply(kube: LocalCluster, manifests: list[Manifest]) -> str:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    return kube.kubectl("apply", "--dry-run=server", "-f", "-", input=document).stdout


def test_everything_the_default_render_holds_is_accepted_by_the_api_server(
    helm: Path, kube: LocalCluster, namespace: str
) -> None:
    manifests = render(helm, release=f"pgw-{secrets.token_hex(3)}", namespace=namespace, include_crds=True)
    assert of_kind(manifests, "CustomResourceDefinition")
    output = dry_run_apply(kube, manifests)
    assert output.count("(server dry run)") == len(manifests), output


def test_everything_a_namespaced_render_holds_is_accepted_by_the_api_server(
    helm: Path, kube: LocalCluster, namespace: str, extra_namespaces: tuple[str, str]
) -> None:
    shop, billing = extra_namespaces
    manifests = render(
        helm,
        "rbac.clusterWide=false",
        f"watchNamespaces={{{shop},{billing}}}",
        "metrics.service.annotations.prometheus\\.io/scrape=true",
        "nodeSelector.pool=system",
        "serviceMonitor.enabled=true",
        release=f"pgw-{secrets.token_hex(3)}",
        namespace=namespace,
    )
    monitors = of_kind(manifests, "ServiceMonitor")
    assert monitors, "rendered with the ServiceMonitor, which this cluster has no CRD for"
    applicable = [m for m in manifests if m["kind"] != "ServiceMonitor"]
    output = dry_run_apply(kube, applicable)
    assert output.count("(server dry run)") == len(applicable), output


def test_the_service_account_may_do_its_work_in_watched_namespaces_only_and_never_read_secrets(
    helm: Path, kube: LocalCluster, namespace: str, extra_namespaces: tuple[str, str]
) -> None:
    """The namespaced RBAC, applied for real, asked of the API server's authorizer."""
    shop, billing = extra_namespaces
    manifests = render(
        helm,
        "rbac.clusterWide=false",
        f"watchNamespaces={{{shop},{billing}}}",
        "rbac.aggregateToDefaultRoles=false",
        release="pgw",
        namespace=namespace,
    )
    rbac = [m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    kube.apply(*rbac)
    (account,) = operator_accounts(manifests)
    user = f"system:serviceaccount:{namespace}:{account['metadata']['name']}"
    # The groups of the account's real token, so a grant to any of them (e.g. all authenticated users) counts.
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]

    def can(verb: str, resource: str, where: str) -> bool:
        """Asked of the authorizer directly (SubjectAccessReview): no discovery, so no CRD needs installing."""
        name, _, group = resource.partition(".")
        name, _, subresource = name.partition("/")
        attributes = {"namespace": where, "verb": verb, "group": group, "resource": name}
        if subresource:
            attributes["subresource"] = subresource
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
        }
        answer = kube.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout
        return bool(json.loads(answer)["status"].get("allowed"))

    for where in (shop, billing):
        assert can("create", "jobs.batch", where)
        assert can("patch", "cronjobs.batch", where)
        assert can("watch", "databasemigrations.pgwarden.io", where)
        assert can("patch", "databasebackups/status.pgwarden.io", where)
        assert can("list", "pods", where)
        assert can("create", "events", where)
        for verb in ("get", "list", "watch"):
            assert not can(verb, "secrets", where), f"{verb} secrets in {where}"
        assert not can("create", "pods", where)
        assert can("get", "configmaps", where)  # migration files, for approval
        assert can("get", "pods/log", where)  # a running migration's progress
        assert not can("list", "configmaps", where)
        assert not can("create", "leases.coordination.k8s.io", where)
    assert can("create", "leases.coordination.k8s.io", namespace)  # its own namespace: leader election
    for where in (namespace, "default"):
        assert not can("create", "jobs.batch", where)
        assert not can("list", "databasemigrations.pgwarden.io", where)
    assert not can("list", "namespaces", "default")
    assert not can("get", "secrets", "kube-system")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_operator_works_under_the_chart_service_account_and_is_never_forbidden(
    helm: Path, kube: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """`pgwarden operator` with the token of the chart's ServiceAccount, bound by the chart's namespaced Role,
    turns a DatabaseBackup into a Job and a status, and the API server refuses it nothing on the way."""
    kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pgwarden-tests",
        "-f",
        str(CHART / "crds"),
    )
    for kind in ("databasemigrations", "databasebackups", "databaserestores"):
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{kind}.pgwarden.io")
    manifests = render(
        helm,
        "rbac.clusterWide=false",
        f"watchNamespaces={{{namespace}}}",
        "rbac.aggregateToDefaultRoles=false",
        release="pgw",
        namespace=namespace,
    )
    kube.apply(*[m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")])
    (account,) = operator_accounts(manifests)
    kubeconfig = kube.service_account_kubeconfig(
        namespace, account["metadata"]["name"], tmp_path / "sa.kubeconfig"
    )
    # The chart's own arguments, with ports free on this machine and the text log format for reading.
    args = [
        a
        for a in operator_container(manifests)["args"]
        if not a.startswith(("--liveness-port", "--metrics-port"))
    ]
    health, metrics = free_port(), free_port()
    args += [
        f"--liveness-port={health}",
        f"--metrics-port={metrics}",
        "--log-format=text",
        f"--kubeconfig={kubeconfig}",
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "AWS_", "KUBE")) and k != "DATABASE_URL"
    }
    # KUBECONFIG too: kopf's login reads the variable, which the kubernetes library fixes at import time,
    # before `--kubeconfig` could set it.
    env.update(PGWARDEN_TIMER_INTERVAL="2", KUBECONFIG=str(kubeconfig))
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [str(Path(sys.executable).with_name("pgwarden")), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        kube.apply(
            {
                "apiVersion": "pgwarden.io/v1alpha1",
                "kind": "DatabaseBackup",
                "metadata": {"name": "rbac-smoke", "namespace": namespace},
                "spec": {
                    "database": {"secretRef": {"name": "no-such-secret"}},
                    "storage": {"volume": {"claimName": "no-such-claim"}},
                },
            }
        )
        kube.wait_for(
            "the operator to write the backup's status",
            lambda: kube.get("databasebackup", "rbac-smoke", namespace).get("status", {}).get("phase"),
            timeout=60,
        )
        jobs = kube.wait_for("the backup's Job", lambda: kube.get_all("jobs", namespace), timeout=30)
        assert jobs[0]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            assert b"pgwarden_" in response.read()
    finally:
        os.killpg(operator.pid, signal.SIGTERM)
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(operator.pid, signal.SIGKILL)
            operator.wait()
        print(f"--- operator log ---\n{log_path.read_text(errors='replace')[-6000:]}")
    output = log_path.read_text(errors="replace")
    forbidden = [line for line in output.splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert not forbidden, "\n".join(forbidden[:20])
