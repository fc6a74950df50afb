"""What `make demo` (hack/demo.py) and the end-to-end tests share.

- `render_chart`: charts/pgwarden rendered by a real helm (hack/build-helm.sh), as parsed manifests, and
  `operator_rbac` to pick the operator's ServiceAccount, Roles and bindings out of them;
- `local_values`: the values that install the chart on the local cluster (`helm install`) as users do,
  with the image hack/cluster-up.sh loaded into containerd;
- `local_examples`: examples/*.yaml with their Secrets and S3 endpoints pointed at this machine's
  PostgreSQL and MinIO (at the Pod bridge's address, where Pods reach them), so the very files users read
  are the ones that run.

Tests import it through tests/cluster/chart_support.py; hack/demo.py imports it from its own directory.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "pgwarden"
EXAMPLES = REPO / "examples"
Obj = dict[str, Any]

# The S3 endpoint, bucket and host the examples are written for (a MinIO and a PostgreSQL in "default").
EXAMPLE_S3_ENDPOINT = "http://minio.default.svc:9000"
EXAMPLE_BUCKET = "pgwarden-backups"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


class Postgres(Protocol):
    """What local_examples needs of a server (pgwarden_testing.localpg.LocalPostgres has it)."""

    port: int
    user: str
    password: str

    def url(self, dbname: str = "postgres") -> str: ...

    def create_database(self, name: str | None = None) -> str: ...


class S3(Protocol):
    """What local_examples needs of an S3 server (pgwarden_testing.s3server.S3Server has it)."""

    endpoint: str
    access_key: str
    secret_key: str


class ToolError(RuntimeError):
    """A build script or helm failed; the message carries its output."""


def run_build(
    script: str, progress: TextIO | None = None, timeout: float = 3600, args: tuple[str, ...] = ()
) -> Path:
    """Run hack/<script> (build-k8s.sh, build-minio.sh, build-helm.sh, build-image.sh): the path it prints last.

    Its progress lines (stderr) go to `progress` as they come, so a first build does not look hung.
    """
    process = subprocess.Popen(
        [str(REPO / "hack" / script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        if progress is not None:
            progress.write(f"  {line}")
            progress.flush()
    stdout = process.communicate(timeout=timeout)[0]
    if process.returncode != 0 or not stdout.strip():
        raise ToolError(f"hack/{script} failed (exit {process.returncode}):\n{''.join(lines)[-4000:]}")
    return Path(stdout.strip().splitlines()[-1])


def render_chart(
    helm: Path,
    *settings: str,
    release: str = "pgwarden",
    namespace: str = "pgwarden-system",
    include_crds: bool = False,
) -> list[Obj]:
    """`helm template` of charts/pgwarden with `--set` settings, as parsed manifests."""
    args = [str(helm), "template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise ToolError(f"helm {' '.join(args[1:])} exited {result.returncode}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def namespaced_rbac_settings(*namespaces: str) -> tuple[str, ...]:
    """Values for a Role per watched namespace, and no aggregation into the default user roles."""
    return (
        "rbac.clusterWide=false",
        f"watchNamespaces={{{','.join(namespaces)}}}",
        "rbac.aggregateToDefaultRoles=false",
    )


def local_values(image: str, namespace: str, apiserver: tuple[str, int], *, timer_interval: int = 2) -> Obj:
    """Values for `helm install` on the local cluster: the image containerd holds (never pulled), a Role in
    `namespace` only, text logs, and the API server's address for in-cluster clients.

    The local cluster has no kube-proxy, so the `kubernetes` Service address the kubelet puts in
    KUBERNETES_SERVICE_HOST leads nowhere; the operator is pointed at the API server on the Pod bridge,
    where it listens (the variables set in the container take precedence over the kubelet's).
    """
    repository, tag = image.rsplit(":", 1)
    host, port = apiserver
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [namespace],
        "rbac": {"clusterWide": False, "aggregateToDefaultRoles": False},
        "operator": {
            "logFormat": "text",
            "workers": 4,
            "extraEnv": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": host},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(port)},
                {"name": "PGWARDEN_TIMER_INTERVAL", "value": str(timer_interval)},
            ],
        },
        "readinessProbe": {"initialDelaySeconds": 1, "periodSeconds": 2},
    }


def operator_rbac(manifests: list[Obj]) -> list[Obj]:
    """The ServiceAccount, Roles/ClusterRoles and their bindings of a render, in that order."""
    return sorted(
        (m for m in manifests if m["kind"] in RBAC_KINDS), key=lambda m: RBAC_KINDS.index(m["kind"])
    )


def service_account_name(manifests: list[Obj]) -> str:
    """The operator's ServiceAccount: not the Jobs' one (component `job`), which has no rights at all."""
    (account,) = [
        m
        for m in manifests
        if m["kind"] == "ServiceAccount"
        and m["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "job"
    ]
    return str(account["metadata"]["name"])


def local_examples(
    pg: Postgres, s3: S3, bucket: str, pod_host: str, databases: Mapping[str, str] | None = None
) -> list[Obj]:
    """examples/*.yaml with their Secrets and S3 endpoints pointed at this machine's servers.

    `databases` maps the examples' database names (shop, inventory) to local URLs; by default each gets a
    fresh database. Any other database an example names (shop_restored) is that name on `pg`. The Secrets
    name `pod_host`, the address the Jobs' Pods reach `pg` at, instead of 127.0.0.1.
    """
    documents: list[Obj] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_name: dict[tuple[str, str], Obj] = {}
    for doc in documents:
        by_name[(doc["kind"], doc["metadata"]["name"])] = doc  # Secrets repeated across files are identical
    if databases is None:
        databases = {"shop": pg.create_database(), "inventory": pg.create_database()}
    for (kind, name), doc in by_name.items():
        data = doc.get("stringData", {})
        if kind == "Secret" and "uri" in data:
            dbname = data["uri"].rsplit("/", 1)[-1]
            uri = databases.get(dbname) or pg.url(dbname)
            data["uri"] = uri.replace("@127.0.0.1:", f"@{pod_host}:")
        elif kind == "Secret" and "host" in data:
            data.update(
                host=pod_host,
                port=str(pg.port),
                dbname=databases["shop"].rsplit("/", 1)[-1],
                user=pg.user,
                password=pg.password,
            )
        elif kind == "Secret" and "AWS_ACCESS_KEY_ID" in data:
            data.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)
        text = json.dumps(doc).replace(EXAMPLE_S3_ENDPOINT, s3.endpoint).replace(EXAMPLE_BUCKET, bucket)
        by_name[(kind, name)] = json.loads(text)
    return list(by_name.values())
