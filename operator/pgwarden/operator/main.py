"""Running the operator: kopf with our handlers, a liveness endpoint, /metrics and bounded workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import kopf

from pgwarden.operator import health, leader, metrics
from pgwarden.operator.deadline import ACTIVE_DEADLINE_ENV
from pgwarden.operator.kube import Kube, load_configuration
from pgwarden.operator.policy import Policy

log = logging.getLogger(__name__)


def login_handler(kubeconfig: str | None) -> Callable[..., kopf.ConnectionInfo]:
    """kopf's login, with the very credentials our own API client uses (`kube.load_configuration`).

    kopf's default login asks the kubernetes library for the default kubeconfig, a location that library
    fixes from KUBECONFIG when it is imported, so `--kubeconfig` could not reach it; this one is told.
    """

    def login(**_: Any) -> kopf.ConnectionInfo:
        try:
            config = load_configuration(kubeconfig)
        except Exception as error:  # ConfigException, a missing or unreadable file, bad YAML
            where = kubeconfig or "in-cluster ServiceAccount, KUBECONFIG or ~/.kube/config"
            raise kopf.LoginError(f"cannot load Kubernetes credentials ({where}): {error}") from error
        # A token is kept as an API key; a ServiceAccount's refreshes, so ask for it rather than read it.
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
            "authorization"
        )
        scheme, _space, token = (header or "").rpartition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            username=config.username or None,
            password=config.password or None,
            scheme=scheme or None,
            token=token or None,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    return login


def run(
    namespaces: Sequence[str] = (),
    *,
    liveness_port: int = 8080,
    metrics_port: int = 9090,
    workers: int = 8,
    image: str | None = None,
    policy: Policy | None = None,
    job_service_account: str | None = None,
    job_active_deadline_seconds: int | None = None,
    kubeconfig: str | None = None,
    verbose: bool = False,
    json_logs: bool = True,
    leader_election: bool = True,
    lease_namespace: str | None = None,
) -> None:
    """Watch `namespaces` (all when empty) until stopped; blocks.

    `job_active_deadline_seconds` (0: none) is the activeDeadlineSeconds of Jobs whose resource sets
    none; it reaches JobSettings through the environment variable JobSettings reads its default from."""
    if job_active_deadline_seconds is not None:
        os.environ[ACTIVE_DEADLINE_ENV] = str(job_active_deadline_seconds)
    kopf.on.login(id="pgwarden-login")(login_handler(kubeconfig))
    logging.getLogger().handlers.clear()  # kopf's handler replaces the command line's
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL)
    import pgwarden.operator.handlers  # noqa: F401  (registers the handlers)

    if not verbose:  # kopf logs every timer tick; our reconcile logs each transition instead
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("pgwarden").setLevel(logging.DEBUG if verbose else logging.INFO)

    if metrics_port:
        metrics.serve(metrics_port)
    log.info("pgwarden operator watching %s", ", ".join(namespaces) or "all namespaces")
    if job_active_deadline_seconds is not None:
        log.info(
            "default Job deadline: %s (a resource's spec.jobTemplate.activeDeadlineSeconds overrides it)",
            f"{job_active_deadline_seconds}s" if job_active_deadline_seconds else "none",
        )
    elector = None
    if leader_election:
        try:
            kube = Kube(load_configuration(kubeconfig))
        except Exception as error:  # ConfigException, a missing or unreadable file, bad YAML
            where = kubeconfig or "in-cluster ServiceAccount, KUBECONFIG or ~/.kube/config"
            raise SystemExit(
                f"pgwarden operator: cannot load Kubernetes credentials ({where}): {error}"
            ) from error
        elector = leader.Elector(
            kube,
            lease_namespace or leader.lease_namespace(list(namespaces)),
            leader.identity(),
            lost=_stop_at_once,
        )
        metrics.leading(lambda: elector is not None and elector.is_leader)
        _standby(elector, liveness_port)
    else:
        metrics.leading(lambda: True)
    try:
        _run_kopf(
            namespaces,
            liveness_port,
            workers,
            image,
            job_active_deadline_seconds,
            kubeconfig,
            policy=policy,
            job_service_account=job_service_account,
        )
    finally:
        if elector is not None:
            elector.release()


def _stop_at_once() -> None:
    """The Lease is lost: another replica may act from now on, so this one stops acting at once."""
    logging.shutdown()
    os._exit(1)


def _standby(elector: leader.Elector, liveness_port: int) -> None:
    """Wait, alive (/healthz answers), until this replica holds the Lease."""
    elector.start()
    server = health.serve(liveness_port) if liveness_port else None
    log.info("leader election: %s waits for Lease %s/%s", elector.me, elector.namespace, elector.name)
    try:
        elector.wait_until_leader()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _run_kopf(
    namespaces: Sequence[str],
    liveness_port: int,
    workers: int,
    image: str | None,
    job_active_deadline_seconds: int | None,
    kubeconfig: str | None,
    *,
    policy: Policy | None = None,
    job_service_account: str | None = None,
) -> None:
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        memo=kopf.Memo(
            workers=workers,
            image=image,
            policy=policy,
            job_service_account=job_service_account,
            job_active_deadline_seconds=job_active_deadline_seconds,
            kubeconfig=kubeconfig,
        ),
    )
