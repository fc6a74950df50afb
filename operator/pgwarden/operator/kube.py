"""The one module that talks to the Kubernetes API: plain JSON over the kubernetes client's connection.

Objects stay dicts in the API's own shape, which is what the pure modules read and build.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from typing import Any

import kubernetes
import urllib3

from pgwarden.api.common import API_GROUP, API_VERSION
from pgwarden.api.crd import KINDS_BY_NAME
from pgwarden.errors import PgwardenError
from pgwarden.operator import naming
from pgwarden.redact import redact

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TIMEOUT = 30.0
# Secrets are read as server-side tables without their objects: rows of name, type, key count and age. Not
# even PartialObjectMetadata, whose annotations may hold a whole Secret (kubectl's last-applied-configuration).
NAMES_ONLY = "application/json;as=Table;v=v1;g=meta.k8s.io"
NAMES_PAGE = 500
WATCH_SECONDS = 300


class KubeError(PgwardenError):
    """The API server answered with an error; `status` is the HTTP status, `message` the server's words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = redact(message)


def names_only_query(label_selector: str) -> dict[str, str]:
    """The query of every request for Secrets: table rows without objects (with `NAMES_ONLY`), by label."""
    query = {"includeObject": "None", "limit": str(NAMES_PAGE)}
    if label_selector:
        query["labelSelector"] = label_selector
    return query


def load_configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """In-cluster credentials (a ServiceAccount token) when in a pod, else the kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            raise kubernetes.config.ConfigException("a kubeconfig was given")
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    return configuration


class Kube:
    """Reads and writes the objects the operator works with, in one namespace at a time."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self.configuration = configuration
        self._client = kubernetes.client.ApiClient(configuration)
        self._pool: urllib3.PoolManager = self._client.rest_client.pool_manager
        self._core = kubernetes.client.CoreV1Api(self._client)
        self.host = str(configuration.host).rstrip("/")

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # auth_settings() refreshes a rotated ServiceAccount token; certificates live in the pool.
        settings: dict[str, Any] = dict(self.configuration.auth_settings())
        for setting in settings.values():
            headers[str(setting["key"])] = str(setting["value"])
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Obj:
        headers = self._headers()
        if accept:
            headers["Accept"] = accept
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self.host + path + ("?" + urllib.parse.urlencode(query) if query else "")
        response = self._pool.request(
            method, url, body=data, headers=headers, timeout=urllib3.Timeout(total=TIMEOUT)
        )
        text = response.data.decode("utf-8", "replace")
        if not 200 <= response.status < 300:
            try:
                message = str(json.loads(text).get("message", text))
            except ValueError:
                message = text
            raise KubeError(response.status, message)
        result = json.loads(text) if text else {}
        return result if isinstance(result, dict) else {}

    def _get(self, path: str) -> Obj | None:
        try:
            return self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    # -- pgwarden resources ---------------------------------------------------------------------

    @staticmethod
    def resource_path(kind: str, namespace: str, name: str = "") -> str:
        plural = KINDS_BY_NAME[kind].plural
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def get_resource(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._get(self.resource_path(kind, namespace, name))

    def patch_status(
        self, kind: str, namespace: str, name: str, status: Obj, *, resource_version: str | None = None
    ) -> None:
        """Merge `status` in; with `resource_version`, only onto that version of the resource (else 409)."""
        body: Obj = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.request(
            "PATCH",
            self.resource_path(kind, namespace, name) + "/status",
            body=body,
            content_type=MERGE_PATCH,
        )

    # -- Jobs, CronJobs, Pods -------------------------------------------------------------------

    def _list(self, path: str, uid: str) -> list[Obj]:
        result = self.request("GET", path, query={"labelSelector": f"{naming.LABEL_RESOURCE_UID}={uid}"})
        return list(result.get("items") or [])

    def jobs_of(self, namespace: str, uid: str) -> list[Obj]:
        """Every Job made for the resource, directly or by its CronJob."""
        return self._list(f"/apis/batch/v1/namespaces/{namespace}/jobs", uid)

    def pods_of(self, namespace: str, uid: str) -> list[Obj]:
        return self._list(f"/api/v1/namespaces/{namespace}/pods", uid)

    def pod_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int, limit_bytes: int
    ) -> str | None:
        """The end of a container's log (bounded both ways); None when it has none yet or the Pod is gone."""
        try:
            text = self._core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                _request_timeout=TIMEOUT,
            )
        except kubernetes.client.ApiException as error:
            if error.status in (400, 404):  # not started yet, or gone
                return None
            raise KubeError(int(error.status or 0), str(error.reason)) from error
        return str(text)

    def cronjobs_of(self, namespace: str, uid: str) -> list[Obj]:
        return self._list(f"/apis/batch/v1/namespaces/{namespace}/cronjobs", uid)

    # -- the leader election Lease ---------------------------------------------------------------

    @staticmethod
    def _lease_path(namespace: str, name: str = "") -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return f"{path}/{name}" if name else path

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        return self._get(self._lease_path(namespace, name))

    def create_lease(self, namespace: str, name: str, spec: Obj) -> Obj:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        return self.request("POST", self._lease_path(namespace), body=body)

    def replace_lease(self, namespace: str, name: str, spec: Obj, resource_version: str) -> Obj:
        """Write the Lease only if nobody wrote it since `resource_version` was read (else 409)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": spec,
        }
        return self.request("PUT", self._lease_path(namespace, name), body=body)

    def get_configmap(self, namespace: str, name: str) -> Obj | None:
        """A ConfigMap of migration files, read only to show and approve their checksums."""
        return self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def get_job(self, namespace: str, name: str) -> Obj | None:
        return self._get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def create(self, manifest: Obj) -> Obj:
        """Create a Job or CronJob; when it already exists (a restarted operator), return the existing one."""
        namespace = manifest["metadata"]["namespace"]
        plural = {"Job": "jobs", "CronJob": "cronjobs"}[manifest["kind"]]
        path = f"/apis/batch/v1/namespaces/{namespace}/{plural}"
        try:
            return self.request("POST", path, body=manifest)
        except KubeError as error:
            if error.status != 409:
                raise
        existing = self._get(f"{path}/{manifest['metadata']['name']}")
        if existing is None:
            raise KubeError(409, f"{manifest['kind']} {manifest['metadata']['name']} exists and vanished")
        return existing

    def apply_cronjob(self, manifest: Obj) -> Obj:
        """Create the CronJob, or replace the spec, labels and annotations of an existing one by `manifest`.

        A replace, not a merge patch: a field the resource no longer sets (timeZone, a nodeSelector,
        resources) must leave the CronJob too. A JSON patch replacing whole objects does that with the
        `patch` verb the operator's Role already has."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        path = f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}"
        if self._get(path) is None:
            return self.create(manifest)
        meta = manifest["metadata"]
        operations = [
            {"op": "replace", "path": "/spec", "value": manifest["spec"]},
            {"op": "add", "path": "/metadata/labels", "value": meta.get("labels") or {}},
            {"op": "add", "path": "/metadata/annotations", "value": meta.get("annotations") or {}},
        ]
        return self.request("PATCH", path, body=operations, content_type=JSON_PATCH)

    def delete_cronjob(self, namespace: str, name: str) -> None:
        try:
            self.request(
                "DELETE",
                f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}",
                body={"propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.status != 404:
                raise

    # -- a set's children and its Secrets' names ------------------------------------------------

    def create_resource(self, manifest: Obj) -> Obj | None:
        """Create a pgwarden resource (a set's child); None when one of that name exists already."""
        meta = manifest["metadata"]
        try:
            return self.request(
                "POST", self.resource_path(manifest["kind"], meta["namespace"]), body=manifest
            )
        except KubeError as error:
            if error.status == 409:
                return None
            raise

    def list_resources(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        """The resources of `kind` with these labels (a set's children, when no watch feeds them)."""
        result = self.request(
            "GET", self.resource_path(kind, namespace), query={"labelSelector": label_selector}
        )
        return list(result.get("items") or [])

    def replace_spec(
        self, kind: str, namespace: str, name: str, spec: Obj, annotations: dict[str, str]
    ) -> None:
        """Replace a resource's whole spec (a field left out leaves it too) and set these annotations."""
        operations: list[Obj] = [{"op": "replace", "path": "/spec", "value": spec}]
        for key, value in annotations.items():
            path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            operations.append({"op": "add", "path": path, "value": value})
        self.request(
            "PATCH", self.resource_path(kind, namespace, name), body=operations, content_type=JSON_PATCH
        )

    def annotate(self, kind: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        self.request("PATCH", self.resource_path(kind, namespace, name), body=body, content_type=MERGE_PATCH)

    def delete_resource(self, kind: str, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", self.resource_path(kind, namespace, name))
        except KubeError as error:
            if error.status != 404:
                raise

    def secret_names(self, namespace: str, label_selector: str) -> list[str]:
        """The names of the Secrets whose labels match, and nothing else of them (a table without objects)."""
        names: list[str] = []
        query = names_only_query(label_selector)
        while True:
            table = self.request(
                "GET", f"/api/v1/namespaces/{namespace}/secrets", query=query, accept=NAMES_ONLY
            )
            names += [str(row["cells"][0]) for row in table.get("rows") or [] if row.get("cells")]
            following = (table.get("metadata") or {}).get("continue")
            if not following:
                return names
            query["continue"] = str(following)

    def watch_secret_names(self, namespace: str) -> Iterator[str]:
        """Each change of a Secret in `namespace`, as the event's type, for up to WATCH_SECONDS (then it ends;
        watch again). Table rows without objects, as `secret_names`: never a label, value or annotation."""
        query = {"includeObject": "None", "watch": "1", "timeoutSeconds": str(WATCH_SECONDS)}
        url = f"{self.host}/api/v1/namespaces/{namespace}/secrets?{urllib.parse.urlencode(query)}"
        headers = self._headers()
        headers["Accept"] = NAMES_ONLY
        response = self._pool.request(
            "GET",
            url,
            headers=headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=TIMEOUT, read=WATCH_SECONDS + TIMEOUT),
        )
        try:
            if not 200 <= response.status < 300:
                text = response.data.decode("utf-8", "replace")
                raise KubeError(response.status, text[:500])
            pending = b""
            for chunk in response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield str(json.loads(line).get("type"))
        finally:
            response.release_conn()
