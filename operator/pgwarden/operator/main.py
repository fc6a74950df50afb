"""Running the operator: kopf with our handlers, a liveness endpoint, /metrics and bounded workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import kopf

from pgwarden.operator import metrics

log = logging.getLogger(__name__)


def run(
    namespaces: Sequence[str] = (),
    *,
    liveness_port: int = 8080,
    metrics_port: int = 9090,
    workers: int = 8,
    image: str | None = None,
    kubeconfig: str | None = None,
    verbose: bool = False,
    json_logs: bool = True,
) -> None:
    """Watch `namespaces` (all when empty) until stopped; blocks."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's own login reads it too
    logging.getLogger().handlers.clear()  # kopf's handler replaces the command line's
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL)
    import pgwarden.operator.handlers  # noqa: F401  (registers the handlers)

    if not verbose:  # kopf logs every timer tick; our reconcile logs each transition instead
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("pgwarden").setLevel(logging.DEBUG if verbose else logging.INFO)

    if metrics_port:
        metrics.serve(metrics_port)
    log.info("pgwarden operator watching %s", ", ".join(namespaces) or "all namespaces")
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        memo=kopf.Memo(workers=workers, image=image, kubeconfig=kubeconfig),
    )
