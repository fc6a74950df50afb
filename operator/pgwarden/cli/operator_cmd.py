"""`pgwarden operator`: run the kopf operator that turns pgwarden resources into Jobs and status."""

from __future__ import annotations

import argparse
import os

from pgwarden.operator.jobs import ACTIVE_DEADLINE_ENV, DEFAULT_ACTIVE_DEADLINE_SECONDS


def seconds(text: str) -> int:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 21600") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 for no deadline")
    return value


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
    parser.add_argument(
        "--job-active-deadline-seconds",
        type=seconds,
        default=os.environ.get(ACTIVE_DEADLINE_ENV) or str(DEFAULT_ACTIVE_DEADLINE_SECONDS),
        metavar="SECONDS",
        help="activeDeadlineSeconds of every Job whose resource sets no spec.jobTemplate.activeDeadlineSeconds"
        f" (default: {ACTIVE_DEADLINE_ENV}, else {DEFAULT_ACTIVE_DEADLINE_SECONDS}, 6 hours; 0: no deadline)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=8,
        help="API threads the operator reconciles with (default 8; each resource has its own kopf worker)",
    )
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
        job_active_deadline_seconds=args.job_active_deadline_seconds,
        kubeconfig=args.kubeconfig,
        verbose=args.verbose,
        json_logs=args.log_format == "json",
    )
    return 0
