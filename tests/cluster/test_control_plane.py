"""The local cluster's real node (containerd, runc, the kubelet) does what pgwarden relies on: Jobs from
pgwarden's image under the `restricted` Pod Security Standard, termination messages, Secrets, volumes, the
downward API, restarts, in-cluster API access and garbage collection."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes
import psycopg
import pytest
from kubernetes.client.exceptions import ApiException
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster


# What the `restricted` Pod Security Standard asks of a Pod and of each container (the tests' namespaces
# enforce it), as pgwarden's own Jobs have it.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def container(image: str, command: list[str], **settings: Any) -> dict[str, Any]:
    return {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": CONTAINER_SECURITY,
        **settings,
    }


def job(name: str, image: str, command: list[str], **settings: Any) -> dict[str, Any]:
    """A one-pod Job that does not retry, running `command` in `image`."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container(image, command, **settings)],
                }
            },
        },
    }


def pod(name: str, image: str, command: list[str], **settings: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": POD_SECURITY,
            "containers": [container(image, command, **settings)],
        },
    }


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def job_condition(kube: LocalCluster, namespace: str, name: str) -> str | None:
    """'Complete' or 'Failed' once the Job controller has decided, else None."""
    conditions = kube.get("job", name, namespace).get("status", {}).get("conditions", [])
    return next(
        (c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None
    )


def wait_for_job(kube: LocalCluster, namespace: str, name: str, timeout: float = 90) -> str:
    return kube.wait_for(f"job {name} to finish", lambda: job_condition(kube, namespace, name), timeout)


def job_pod(kube: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    pods = kube.get_all("pods", namespace, "-l", f"job-name={name}")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def test_a_job_whose_command_succeeds_is_marked_complete(kube: LocalCluster, namespace: str) -> None:
    kube.apply(
        {
            **job("ok", kube.image, ["python", "-c", "print('hello from the pod')"]),
            "metadata": {"name": "ok", "namespace": namespace},
        }
    )

    assert wait_for_job(kube, namespace, "ok") == "Complete"
    finished = job_pod(kube, namespace, "ok")
    assert finished["status"]["phase"] == "Succeeded"
    assert finished["spec"]["nodeName"] == "pgwarden-node"
    node = kube.get("node", "pgwarden-node", "default")["status"]["nodeInfo"]
    assert node["containerRuntimeVersion"].startswith("containerd://")
    assert terminated(finished)["exitCode"] == 0
    assert terminated(finished)["reason"] == "Completed"
    assert "hello from the pod" in kube.kubectl("logs", "-n", namespace, "job/ok").stdout


def test_a_failing_command_fails_the_job_and_leaves_its_termination_message(
    kube: LocalCluster, namespace: str
) -> None:
    command = [
        "sh",
        "-c",
        "echo 'migration 0003 failed: relation \"shop\" does not exist' > /dev/termination-log; exit 3",
    ]
    kube.apply({**job("broken", kube.image, command), "metadata": {"name": "broken", "namespace": namespace}})

    assert wait_for_job(kube, namespace, "broken") == "Failed"
    failed = job_pod(kube, namespace, "broken")
    assert failed["status"]["phase"] == "Failed"
    state = terminated(failed)
    assert (state["exitCode"], state["reason"]) == (3, "Error")
    assert state["message"] == 'migration 0003 failed: relation "shop" does not exist\n'


def test_an_env_var_from_a_secret_key_reaches_the_process(kube: LocalCluster, namespace: str) -> None:
    env = [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}]
    manifest = job("env", kube.image, ["sh", "-c", 'test "$DB_PASSWORD" = "s3cr3t with spaces"'], env=env)
    kube.apply(
        {
            **secret("shop-db", password="s3cr3t with spaces"),
            "metadata": {"name": "shop-db", "namespace": namespace},
        },
        {**manifest, "metadata": {"name": "env", "namespace": namespace}},
    )

    assert wait_for_job(kube, namespace, "env") == "Complete"


def test_a_missing_secret_key_is_a_create_container_config_error_until_the_key_appears(
    kube: LocalCluster, namespace: str
) -> None:
    env = [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}]
    kube.apply(
        {**secret("shop-db", user="app"), "metadata": {"name": "shop-db", "namespace": namespace}},
        {
            **pod("waits", kube.image, ["sh", "-c", 'test -n "$DB_PASSWORD"'], env=env),
            "metadata": {"name": "waits", "namespace": namespace},
        },
    )

    def waiting() -> dict[str, Any] | None:
        statuses = kube.get("pod", "waits", namespace).get("status", {}).get("containerStatuses", [])
        return statuses[0]["state"].get("waiting") if statuses else None

    state = kube.wait_for(
        "CreateContainerConfigError",
        lambda: (w := waiting()) and w.get("reason") == "CreateContainerConfigError" and w,
    )
    assert state["message"] == f"couldn't find key password in Secret {namespace}/shop-db"
    assert kube.get("pod", "waits", namespace)["status"]["phase"] == "Pending"

    kube.apply(
        {
            **secret("shop-db", user="app", password="later"),
            "metadata": {"name": "shop-db", "namespace": namespace},
        }
    )
    kube.wait_for(
        "the pod to run once the key exists",
        lambda: kube.get("pod", "waits", namespace)["status"]["phase"] == "Succeeded",
        timeout=60,
    )


def test_a_configmap_volume_is_visible_at_its_mount_path(kube: LocalCluster, namespace: str) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "migrations", "namespace": namespace},
        "data": {"0001_create_shop.sql": "CREATE TABLE shop (id bigint PRIMARY KEY);\n"},
    }
    manifest = job(
        "reads-config",
        kube.image,
        [
            "sh",
            "-c",
            "ls /etc/pgwarden/migrations && cat /etc/pgwarden/migrations/0001_create_shop.sql > /dev/termination-log",
        ],
        volumeMounts=[{"name": "migrations", "mountPath": "/etc/pgwarden/migrations"}],
    )
    manifest["spec"]["template"]["spec"]["volumes"] = [
        {"name": "migrations", "configMap": {"name": "migrations"}}
    ]
    kube.apply(config_map, {**manifest, "metadata": {"name": "reads-config", "namespace": namespace}})

    assert wait_for_job(kube, namespace, "reads-config") == "Complete"
    assert (
        terminated(job_pod(kube, namespace, "reads-config"))["message"]
        == "CREATE TABLE shop (id bigint PRIMARY KEY);\n"
    )
    assert not Path("/etc/pgwarden").exists(), "the mount point leaked onto the host"


def test_deleting_a_job_garbage_collects_its_pods_and_kills_their_processes(
    kube: LocalCluster, namespace: str
) -> None:
    token = f"pgwarden-gc-{namespace}"
    kube.apply(
        {
            **job("sleeper", kube.image, ["python", "-c", f"import time; time.sleep(600)  # {token}"]),
            "metadata": {"name": "sleeper", "namespace": namespace},
        }
    )
    kube.wait_for(
        "the sleeper pod to run",
        lambda: any(
            p["status"].get("phase") == "Running"
            for p in kube.get_all("pods", namespace, "-l", "job-name=sleeper")
        ),
    )
    assert _processes_mentioning(token), "the pod's process should be running"

    kube.kubectl("delete", "job", "sleeper", "-n", namespace, "--cascade=background", "--wait=false")

    kube.wait_for(
        "the job's pods to be gone",
        lambda: not kube.get_all("pods", namespace, "-l", "job-name=sleeper"),
        timeout=60,
    )
    kube.wait_for("the pod's process to be gone", lambda: not _processes_mentioning(token), timeout=10)


def _processes_mentioning(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


def test_a_service_account_token_kubeconfig_has_only_its_granted_rights(
    kube: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list", "--resource=pods")
    kube.kubectl(
        "create",
        "rolebinding",
        "reader",
        "-n",
        namespace,
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
    )
    limited = kube.service_account_kubeconfig(namespace, "reader", tmp_path / "reader.kubeconfig")

    assert kube.kubectl("get", "pods", "-n", namespace, kubeconfig=limited).returncode == 0
    denied = kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=limited, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    core = kubernetes.client.CoreV1Api(kube.api_client(limited))
    assert core.list_namespaced_pod(namespace).items == []
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_secret(namespace)
    assert refused.value.status == 403


def test_pgwarden_inspect_runs_in_a_job_with_the_url_from_a_secret(
    kube: LocalCluster, namespace: str, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE shop (id bigint PRIMARY KEY, name text)")
        conn.execute("INSERT INTO shop SELECT g, 'item ' || g FROM generate_series(1, 5) g")
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "uri"}}}]
    manifest = job("inspect", kube.image, ["sh", "-c", 'pgwarden inspect "$DATABASE_URL" --json'], env=env)
    kube.apply(
        {
            **secret("shop-db", uri=url.replace("127.0.0.1", kube.pod_gateway)),
            "metadata": {"name": "shop-db", "namespace": namespace},
        },
        {**manifest, "metadata": {"name": "inspect", "namespace": namespace}},
    )

    condition = wait_for_job(kube, namespace, "inspect", timeout=120)
    logs = kube.kubectl("logs", "-n", namespace, "job/inspect").stdout
    assert condition == "Complete", logs
    state = terminated(job_pod(kube, namespace, "inspect"))
    assert state["exitCode"] == 0
    output = state.get("message") or logs
    assert "tables" in first_json_object(output), output


def first_json_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return dict(value)


IN_POD_SCRIPT = """
import json, os, pathlib, sys
from kubernetes import client, config

config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
)
attempt = pathlib.Path("/scratch/attempt")
runs = int(attempt.read_text()) + 1 if attempt.exists() else 1
attempt.write_text(str(runs))
summary = {
    "user": review.status.user_info.username,
    "marker": pathlib.Path("marker").read_text().strip(),
    "env": {k: os.environ[k] for k in ("GREETING", "POD_NAME", "MSG", "IP")},
    "labels": pathlib.Path("/etc/podinfo/labels").read_text(),
}
pathlib.Path("/dev/termination-log").write_text(json.dumps(summary))
sys.exit(7 if runs == 1 else 0)
"""


def test_init_containers_env_sources_downward_api_restarts_and_in_cluster_access_work(
    kube: LocalCluster, namespace: str
) -> None:
    # No kube-proxy here: in-cluster clients reach the API server on the bridge, as the operator does.
    host, port = kube.apiserver
    spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "securityContext": POD_SECURITY,
        "initContainers": [
            container(
                kube.image,
                ["sh", "-c", "echo init-ran > /scratch/marker"],
                name="init",
                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
            )
        ],
        "containers": [
            container(
                kube.image,
                ["python", "-c", IN_POD_SCRIPT],
                workingDir="/scratch",
                envFrom=[{"configMapRef": {"name": "settings"}}],
                env=[
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MSG", "value": "$(GREETING) from $(POD_NAME)"},
                    {"name": "KUBERNETES_SERVICE_HOST", "value": host},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": str(port)},
                ],
                volumeMounts=[
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "podinfo", "mountPath": "/etc/podinfo"},
                ],
            )
        ],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "podinfo",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
        ],
    }
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"GREETING": "hello"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "full", "namespace": namespace, "labels": {"app": "demo"}},
            "spec": spec,
        },
    )

    kube.wait_for(
        "the pod to succeed after one restart",
        lambda: kube.get("pod", "full", namespace)["status"]["phase"] == "Succeeded",
        timeout=120,
    )
    status = kube.get("pod", "full", namespace)["status"]
    main = status["containerStatuses"][0]
    assert main["restartCount"] == 1
    assert main["lastState"]["terminated"]["exitCode"] == 7
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    summary = json.loads(main["state"]["terminated"]["message"])
    assert summary == {
        "user": f"system:serviceaccount:{namespace}:default",
        "marker": "init-ran",
        "env": {"GREETING": "hello", "POD_NAME": "full", "MSG": "hello from full", "IP": status["podIP"]},
        "labels": 'app="demo"',
    }
    assert status["podIP"].startswith(host.rsplit(".", 1)[0] + ".")
