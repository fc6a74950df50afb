"""`pgwarden operator`: run the kopf operator that turns pgwarden resources into Jobs and status."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the Kubernetes operator",
        description="Watch DatabaseMigration, DatabaseBackup and DatabaseRestore resources and run them as "
        "Jobs. Credentials: --kubeconfig when given, else the in-cluster ServiceAccount, else KUBECONFIG "
        "or ~/.kube/config.",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig to use outside a cluster")
    parser.add_argument(
        "--job-image",
        default=os.environ.get("PGWARDEN_JOB_IMAGE"),
        help="image of the Jobs (default: PGWARDEN_JOB_IMAGE, else the released pgwarden image)",
    )
    parser.add_argument("--workers", type=int, default=8, help="resources handled at once (default 8)")
    parser.add_argument(
        "--liveness-port", type=int, default=8080, help="/healthz port; 0 disables (default 8080)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="/metrics port; 0 disables (default 9090)"
    )
    parser.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="log format (default json)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pgwarden.operator.main import run as run_operator

    run_operator(
        args.namespace,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        workers=args.workers,
        image=args.job_image,
        kubeconfig=args.kubeconfig,
        verbose=args.verbose,
        json_logs=args.log_format == "json",
    )
    return 0
