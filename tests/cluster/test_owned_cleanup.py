"""The operator deletes a gone resource's CronJobs itself, on the real API server: those it still owns, and
never one orphaned (`--cascade=orphan`) or changed since it was read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgwarden.operator.cleanup import delete_owned_cronjobs, still_owned
from pgwarden.operator.kube import Kube, load_configuration

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

Obj = dict[str, Any]


def cronjob(name: str, namespace: str, owner: Obj | None) -> Obj:
    """A suspended CronJob (it never runs), owned by `owner` when given."""
    meta: Obj = {"name": name, "namespace": namespace}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    container = {"name": "c", "image": "pgwarden:never-pulled"}
    template = {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta,
        "spec": {"schedule": "17 3 * * *", "suspend": True, "jobTemplate": template},
    }


def test_a_deleted_owners_cronjobs_are_deleted_but_not_an_orphaned_one(
    kube: LocalCluster, namespace: str
) -> None:
    # The owner is a ConfigMap that stays: the garbage collector never deletes its dependents, so whatever
    # disappears here was deleted by the operator's cleanup.
    kube.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": namespace}}
    )
    owner = kube.get("configmap", "owner", namespace)
    uid = owner["metadata"]["uid"]
    kube.apply(
        cronjob("owned-backup", namespace, owner),
        cronjob("owned-drill", namespace, owner),
        cronjob("orphaned", namespace, None),
    )
    known = [kube.get("cronjob", name, namespace) for name in ("owned-backup", "owned-drill", "orphaned")]
    assert [still_owned(item, uid) for item in known] == [True, True, False]
    api = Kube(load_configuration(str(kube.kubeconfig)))

    deleted = delete_owned_cronjobs(api, namespace, uid, known)

    assert deleted == 2
    left = [item["metadata"]["name"] for item in kube.get_all("cronjobs", namespace)]
    assert left == ["orphaned"]
    # Asked again (the collector or a second event was first): nothing to delete, and no error.
    assert delete_owned_cronjobs(api, namespace, uid, known) == 0
    assert [item["metadata"]["name"] for item in kube.get_all("cronjobs", namespace)] == ["orphaned"]


def test_a_resource_recreated_under_the_same_name_keeps_its_new_cronjob(
    kube: LocalCluster, namespace: str
) -> None:
    """Deleted and applied again before the cleanup ran (a `kubectl replace --force`, an Argo CD re-sync): the
    CronJob of the same name now belongs to the new resource, and the old one's cleanup leaves it."""
    for name in ("before", "after"):
        kube.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
        )
    old, new = (kube.get("configmap", name, namespace) for name in ("before", "after"))
    kube.apply(cronjob("nightly", namespace, old))
    known = kube.get("cronjob", "nightly", namespace)  # what the watch saw of the deleted resource's CronJob
    kube.kubectl("delete", "cronjob", "nightly", "-n", namespace, "--wait=true")
    kube.apply(cronjob("nightly", namespace, new))
    api = Kube(load_configuration(str(kube.kubeconfig)))

    assert delete_owned_cronjobs(api, namespace, old["metadata"]["uid"], [known]) == 0

    current = kube.get("cronjob", "nightly", namespace)
    assert still_owned(current, new["metadata"]["uid"])
