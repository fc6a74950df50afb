"""The API calls `kubectl pgwarden` makes, through the kubernetes client (imported here, on first use), with
the kubeconfig, context and namespace chosen as kubectl chooses them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pgwarden.api.common import API_GROUP, API_VERSION

Obj = dict[str, Any]
PLURALS = {
    "DatabaseMigration": "databasemigrations",
    "DatabaseBackup": "databasebackups",
    "DatabaseRestore": "databaserestores",
}
RESOURCE_UID_LABEL = f"{API_GROUP}/resource-uid"
TASK_LABEL = f"{API_GROUP}/task"


class PluginError(Exception):
    """What went wrong, said for the user (exit 1)."""


@dataclass
class Client:
    """One cluster and namespace, as `--kubeconfig`, `--context` and `--namespace` (or the context) say."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Client:
        from kubernetes import client, config

        try:
            configuration = client.Configuration()
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            if namespace is None:
                contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
                chosen = next((c for c in contexts if c["name"] == context), active) if context else active
                namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError) as error:
            raise PluginError(f"cannot load the kubeconfig: {error}") from None
        return cls(client.ApiClient(configuration), namespace)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, **kwargs)
        except ApiException as error:
            raise PluginError(_api_message(error)) from None
        except HTTPError as error:
            raise PluginError(f"cannot reach the API server: {error}") from None

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def list_resources(self, kind: str, all_namespaces: bool = False) -> list[Obj]:
        custom = self._custom()
        if all_namespaces:
            found = self._call(custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURALS[kind])
        else:
            found = self._call(
                custom.list_namespaced_custom_object, API_GROUP, API_VERSION, self.namespace, PLURALS[kind]
            )
        return [dict(item, kind=kind) for item in found.get("items", [])]

    def get_resource(self, kind: str, name: str) -> Obj | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self._custom().get_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURALS[kind], name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise PluginError(_api_message(error)) from None
        return dict(found, kind=kind)

    def find(self, name: str, kinds: tuple[str, ...] = tuple(PLURALS)) -> Obj:
        """The one resource of `kinds` named `name` in the namespace."""
        found = [r for kind in kinds if (r := self.get_resource(kind, name)) is not None]
        if not found:
            wanted = " or ".join(kinds)
            raise PluginError(f"no {wanted} named {name!r} in namespace {self.namespace}")
        if len(found) > 1:
            raise PluginError(f"{name!r} names a {' and a '.join(r['kind'] for r in found)}; add --kind")
        return found[0]

    def annotate(self, kind: str, name: str, key: str, value: str) -> None:
        patch = {"metadata": {"annotations": {key: value}}}
        self._call(
            self._custom().patch_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            self.namespace,
            PLURALS[kind],
            name,
            patch,
        )

    def create_resource(self, manifest: Obj) -> Obj:
        kind = manifest["kind"]
        created = self._call(
            self._custom().create_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            self.namespace,
            PLURALS[kind],
            manifest,
        )
        return dict(created, kind=kind)

    def owned_by(self, uid: str, what: str = "jobs") -> list[Obj]:
        """A resource's Jobs (or CronJobs), oldest first, by the label the operator puts on them."""
        batch = self._batch()
        method = batch.list_namespaced_job if what == "jobs" else batch.list_namespaced_cron_job
        found = self._call(method, self.namespace, label_selector=f"{RESOURCE_UID_LABEL}={uid}")
        items = [self.api.sanitize_for_serialization(item) for item in found.items]
        return sorted(items, key=lambda item: item["metadata"].get("creationTimestamp") or "")

    def get_job(self, name: str) -> Obj:
        return dict(
            self.api.sanitize_for_serialization(
                self._call(self._batch().read_namespaced_job, name, self.namespace)
            )
        )

    def job_from_cronjob(self, cronjob: Obj) -> Obj:
        """A Job made from a CronJob's template now, as `kubectl create job --from=cronjob/...` makes it."""
        name = f"{cronjob['metadata']['name'][:52]}-now-{secrets.token_hex(3)[:5]}"
        template = cronjob["spec"]["jobTemplate"]
        meta = template.get("metadata") or {}
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(meta.get("labels") or {}),
                "annotations": {
                    **(meta.get("annotations") or {}),
                    "cronjob.kubernetes.io/instantiate": "manual",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": cronjob["metadata"]["name"],
                        "uid": cronjob["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        created = self._call(self._batch().create_namespaced_job, self.namespace, job)
        return dict(self.api.sanitize_for_serialization(created))

    def pods_of_job(self, job: str) -> list[Obj]:
        found = self._call(
            self._core().list_namespaced_pod,
            self.namespace,
            label_selector=f"batch.kubernetes.io/job-name={job}",
        )
        items = [self.api.sanitize_for_serialization(item) for item in found.items]
        return sorted(items, key=lambda item: item["metadata"].get("creationTimestamp") or "")

    def pod_log(self, pod: str, container: str | None = None, tail: int | None = None) -> str:
        kwargs: dict[str, Any] = {"container": container} if container else {}
        if tail is not None:
            kwargs["tail_lines"] = tail
        return str(self._call(self._core().read_namespaced_pod_log, pod, self.namespace, **kwargs))


def _api_message(error: Any) -> str:
    """The API server's own message (its Status), not the whole HTTP exchange."""
    import json

    try:
        message = json.loads(error.body or "{}").get("message")
    except ValueError:
        message = None
    return f"{error.status} {error.reason}: {message or error.body or ''}".strip()
