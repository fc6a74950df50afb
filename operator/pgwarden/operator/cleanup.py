"""A deleted resource's CronJobs, deleted by the operator as soon as it sees the resource gone.

Kubernetes' garbage collector would delete them too (they are owned), but it is one client of
kube-controller-manager with a rate limit of its own (20 requests a second by default, the same on a real
cluster), and it spends two or three requests on each dependent: deleting 1,000 scheduled backups left
their CronJobs behind for over a minute. The operator already knows each resource's CronJobs from its
watch, so it deletes them at once, in parallel with its other work; the collector then finds them gone.

Still no finalizer: the resource is gone before this runs, and when the operator is down the collector
does it all. A CronJob whose ownerReference no longer names the resource (deleted with
`--cascade=orphan`: the collector removes the reference before the owner goes) is left alone; the
ownerReference is read fresh and the delete carries its resourceVersion as a precondition, so a CronJob
orphaned meanwhile is never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.objects import Obj

log = logging.getLogger(__name__)


def still_owned(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether an object's ownerReferences still name the owner (not orphaned)."""
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("uid") == owner_uid for reference in references)


def delete_owned_cronjobs(kube: Kube, namespace: str, owner_uid: str, cronjobs: Iterable[Obj]) -> int:
    """Delete the CronJobs (as the watch knows them) that a deleted resource still owns; how many."""
    deleted = 0
    for known in cronjobs:
        name = str(known["metadata"]["name"])
        path = f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}"
        try:
            current = kube.request("GET", path)
            if not still_owned(current, owner_uid):
                continue
            meta = current["metadata"]
            preconditions = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            kube.request(
                "DELETE", path, body={"propagationPolicy": "Background", "preconditions": preconditions}
            )
            deleted += 1
        except KubeError as error:
            # 404: the collector was first; 409: it changed (orphaned) since read: either way not ours now.
            if error.status not in (404, 409):
                log.warning("CronJob %s/%s of a deleted resource not deleted: %s", namespace, name, error)
    return deleted
