"""`pgwarden operator`: its flags and environment variables, and running the kopf operator with them.

The operator's own command module, registered by `pgwarden.console` beside the command line's commands (the
command line never imports the operator)."""

from __future__ import annotations

import argparse
import os
import sys

from pgwarden.operator.deadline import ACTIVE_DEADLINE_ENV, DEFAULT_ACTIVE_DEADLINE_SECONDS
from pgwarden.operator.policy import (
    ALLOW_IMAGE_OVERRIDE,
    JOB_IMAGES,
    MIGRATION_IMAGES,
    SERVICE_ACCOUNTS,
    Policy,
    PolicySettingError,
    image_entry,
)

# Each policy flag's environment variable (a comma-separated list), read when the flag is not given.
POLICY_ENV = {
    "allow_job_image_override": "PGWARDEN_ALLOW_JOB_IMAGE_OVERRIDE",
    "allowed_job_image": "PGWARDEN_ALLOWED_JOB_IMAGES",
    "allowed_migration_image": "PGWARDEN_ALLOWED_MIGRATION_IMAGES",
    "allowed_service_account": "PGWARDEN_ALLOWED_SERVICE_ACCOUNTS",
}
JOB_SERVICE_ACCOUNT_ENV = "PGWARDEN_JOB_SERVICE_ACCOUNT"


def seconds(text: str) -> int:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 21600") from exc
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
    parser.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="act at once, without holding the Lease pgwarden-operator (only for a single replica)",
    )
    parser.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the leader election Lease (default: POD_NAMESPACE, else the ServiceAccount's, "
        "else the first --namespace)",
    )
    policy_flags(parser)
    parser.set_defaults(run=run)


def allowlist_entry(text: str) -> str:
    """An image allowlist entry (argparse type): refused with how to write it when it cannot be enforced."""
    try:
        return image_entry(text)
    except PolicySettingError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def policy_flags(parser: argparse.ArgumentParser) -> None:
    """What resources may ask the operator to run (pgwarden.operator.policy); the chart's `policy:` values."""
    group = parser.add_argument_group(
        "policy",
        "What a resource may ask its Jobs to run. Image entries: a repository (any tag or digest of it), "
        "registry/path/* (any repository under it), repository@sha256:... (that digest only) or * (anything); "
        "tags are refused, since they can move. Each list flag is repeatable; when absent, its environment "
        "variable (comma-separated) is read.",
    )
    group.add_argument(
        ALLOW_IMAGE_OVERRIDE.flag,
        action="store_true",
        default=os.environ.get(POLICY_ENV["allow_job_image_override"], "").lower() in ("1", "true", "yes"),
        help="let spec.jobTemplate.image name an image of --allowed-job-image (default: off; the Jobs' own "
        f"image is always allowed; env {POLICY_ENV['allow_job_image_override']})",
    )
    for setting, key, metavar, what in (
        (JOB_IMAGES, "allowed_job_image", "IMAGE", "an image spec.jobTemplate.image may name"),
        (MIGRATION_IMAGES, "allowed_migration_image", "IMAGE", "an image spec.migrations.image may name"),
        (
            SERVICE_ACCOUNTS,
            "allowed_service_account",
            "NAME",
            "a ServiceAccount spec.jobTemplate.serviceAccountName may name, besides --job-service-account",
        ),
    ):
        group.add_argument(
            setting.flag,
            action="append",
            type=allowlist_entry if metavar == "IMAGE" else str,
            metavar=metavar,
            help=f"{what} (repeatable; env {POLICY_ENV[key]}; default: none)",
        )
    group.add_argument(
        "--job-service-account",
        default=os.environ.get(JOB_SERVICE_ACCOUNT_ENV) or None,
        metavar="NAME",
        help="ServiceAccount of Jobs whose resource names none (the chart's, with no permissions and no "
        f"token); always allowed (env {JOB_SERVICE_ACCOUNT_ENV}; default: the namespace's default)",
    )


def _listed(args: argparse.Namespace, key: str) -> tuple[str, ...]:
    given = getattr(args, key, None)
    if given is not None:
        return tuple(given)
    return tuple(item.strip() for item in os.environ.get(POLICY_ENV[key], "").split(",") if item.strip())


def job_policy(args: argparse.Namespace) -> Policy:
    """The policy the flags (else their environment variables) set; PolicySettingError names a bad entry."""
    return Policy(
        allow_image_override=bool(args.allow_job_image_override),
        job_images=_listed(args, "allowed_job_image"),
        migration_images=_listed(args, "allowed_migration_image"),
        service_accounts=_listed(args, "allowed_service_account"),
    )


def run(args: argparse.Namespace) -> int:
    from pgwarden.operator.main import run as run_operator

    try:
        policy = job_policy(args)  # refused before the operator starts (exit 2), with how to write the entry
    except PolicySettingError as error:
        print(f"pgwarden operator: {error}", file=sys.stderr)
        return 2
    run_operator(
        args.namespace,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        workers=args.workers,
        image=args.job_image,
        policy=policy,
        job_service_account=args.job_service_account,
        job_active_deadline_seconds=args.job_active_deadline_seconds,
        kubeconfig=args.kubeconfig,
        verbose=args.verbose,
        json_logs=args.log_format == "json",
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
    )
    return 0
