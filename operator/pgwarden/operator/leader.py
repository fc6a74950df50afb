"""Two replicas, one active: leader election on a coordination.k8s.io Lease in the operator's namespace.

Not kopf's peering: replicas of one Deployment share a priority, and kopf freezes every operator of equal
priority. The Lease is the pattern client-go uses: the holder renews it every few seconds; another replica
takes it once it was not renewed for `duration`; a holder that could not renew within `renew_deadline`
(shorter than `duration`) stops acting before anyone else may start, so two never act at once. Job names are
deterministic and creating one that exists adopts it, so a handover never duplicates a Job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgwarden.operator.kube import Kube, KubeError
from pgwarden.operator.objects import Obj
from pgwarden.operator.observe import parse_time

log = logging.getLogger(__name__)

LEASE_NAME = "pgwarden-operator"
IDENTITY_ENV = "POD_NAME"
NAMESPACE_ENV = "POD_NAMESPACE"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Timing:
    """How long a Lease lasts unrenewed, how long the holder keeps trying to renew, how often one tries."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


def identity() -> str:
    """This replica's name: the Pod's (downward API), else host and process."""
    return os.environ.get(IDENTITY_ENV) or f"{socket.gethostname()}-{os.getpid()}"


def lease_namespace(watched: list[str]) -> str:
    """Where the Lease lives: the operator's own namespace (POD_NAMESPACE, else its ServiceAccount's), else
    the first namespace it watches."""
    given = os.environ.get(NAMESPACE_ENV)
    if given:
        return given
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        if watched:
            return watched[0]
    return "default"


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(lease: Obj | None, me: str, now: datetime, duration: float) -> Obj | None:
    """The Lease spec that makes `me` the holder now, or None while another holder's lease is valid."""
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    lasts = float(spec.get("leaseDurationSeconds") or duration)
    if holder and holder != me and renewed is not None and now < renewed + timedelta(seconds=lasts):
        return None
    transitions = int(spec.get("leaseTransitions") or 0)
    taken = holder != me
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": int(duration),
        "acquireTime": _micro(now) if taken else spec.get("acquireTime") or _micro(now),
        "renewTime": _micro(now),
        "leaseTransitions": transitions + (1 if taken and holder else 0),
    }


class Elector:
    """Holds the Lease for this replica: `wait_until_leader` blocks until it is the leader; once it is, a
    renewal that fails for `renew_deadline` calls `lost` (which must stop the operator)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        me: str,
        *,
        lost: Callable[[], None],
        timing: Timing = Timing(),
        name: str = LEASE_NAME,
    ) -> None:
        self.kube, self.namespace, self.me, self.name = kube, namespace, me, name
        self.timing = timing
        self._lost = lost
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgwarden-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def start(self) -> None:
        self._thread.start()

    def wait_until_leader(self) -> None:
        while not self._leader.wait(timeout=1.0):
            if self._stop.is_set():
                return

    def _try(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it now."""
        lease = self.kube.get_lease(self.namespace, self.name)
        spec = claim(lease, self.me, datetime.now(UTC), self.timing.duration)
        if spec is None:
            return False
        try:
            if lease is None:
                self.kube.create_lease(self.namespace, self.name, spec)
            else:
                version = lease["metadata"]["resourceVersion"]
                self.kube.replace_lease(self.namespace, self.name, spec, version)
        except KubeError as error:
            if error.status == 409:  # another replica wrote first: it holds the Lease
                return False
            raise
        return True

    def _run(self) -> None:
        renewed = time.monotonic()
        while not self._stop.is_set():
            try:
                held = self._try()
            except Exception as error:  # the API unreachable: keep trying until the deadline
                log.warning("leader election: %s", self._problem(error))
                held = False
            now = time.monotonic()
            if held:
                renewed = now
                if not self._leader.is_set():
                    log.info(
                        "leader election: %s is the active replica (Lease %s/%s)",
                        self.me,
                        self.namespace,
                        self.name,
                    )
                    self._leader.set()
            elif self._leader.is_set() and now - renewed > self.timing.renew_deadline:
                log.error(
                    "leader election: %s could not renew its Lease for %gs; stopping", self.me, now - renewed
                )
                self._leader.clear()
                self._stop.set()
                self._lost()
                return
            self._stop.wait(self.timing.retry)

    def _problem(self, error: Exception) -> str:
        """Why the Lease could not be read or written, and what to do about a refusal."""
        where = f"Lease {self.name} in namespace {self.namespace}"
        if isinstance(error, KubeError) and error.status == 403:
            return (
                f"{where} is forbidden ({error.message}); grant create, and get and update of {self.name}, on "
                "leases (coordination.k8s.io) there (the chart's RBAC does), or run a single replica with "
                "--no-leader-election"
            )
        return f"cannot read or write {where}: {error}; retrying"

    def release(self) -> None:
        """Stop, and give the Lease up at once (a graceful stop hands over without waiting for it to expire)."""
        self._stop.set()
        if not self._leader.is_set():
            return
        self._leader.clear()
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is not None and spec.get("holderIdentity") == self.me:
                released = dict(
                    spec, holderIdentity="", leaseDurationSeconds=1, renewTime=_micro(datetime.now(UTC))
                )
                self.kube.replace_lease(
                    self.namespace, self.name, released, lease["metadata"]["resourceVersion"]
                )
        except Exception as error:  # it expires by itself
            log.warning(
                "leader election: could not release Lease %s/%s: %s", self.namespace, self.name, error
            )
