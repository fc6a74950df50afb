"""`pgwarden prune`: apply retention (keep-last, calendar rules, max-age) to one owner's backups, remove debris
of incomplete ones."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pgwarden.api.choices import DEFAULT_DEBRIS_GRACE
from pgwarden.cli.backups_cmd import add_owner_arg, open_location
from pgwarden.cli.output import add_json_flag, duration_flag
from pgwarden.engine.pause_points import pause_point
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.streams import print_json, print_text

if TYPE_CHECKING:
    from pgwarden.storage.listing import PruneReport
    from pgwarden.storage.retention import RetentionPolicy

NAME = "prune"
HELP = "delete backups retention no longer keeps, and debris of incomplete ones"
DESCRIPTION = (
    "Keep the N newest complete backups, the newest backup of each of the N most recent days, "
    "ISO weeks, months and years that have one (counted in --time-zone), and every backup younger than "
    "--max-age: a backup any rule keeps is kept, and each is reported with the rules that kept it. Never "
    "delete the newest complete backup nor the newest verified one. "
    "Retention counts one owner's backups: a prefix holding several owners' needs --owner or "
    "--all-owners. Debris of incomplete backups goes once untouched for the grace period."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="URI", help="s3://bucket/prefix or a filesystem path")
    parser.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest complete backups")
    for unit, period in (
        ("daily", "days"),
        ("weekly", "ISO weeks"),
        ("monthly", "months"),
        ("yearly", "years"),
    ):
        parser.add_argument(
            f"--keep-{unit}",
            type=int,
            metavar="N",
            help=f"keep the newest backup of each of the N most recent {period} that have one",
        )
    parser.add_argument("--max-age", metavar="AGE", help="keep backups younger than this (90m, 12h, 7d, 2w)")
    parser.add_argument(
        "--time-zone",
        default="UTC",
        metavar="ZONE",
        help="the IANA time zone whose calendar days, weeks, months and years are counted (default UTC)",
    )
    whose = parser.add_mutually_exclusive_group()
    add_owner_arg(whose, "apply retention to this owner's backups only")
    whose.add_argument(
        "--all-owners",
        action="store_true",
        help="apply retention to each owner's backups on its own (each keeps its newest)",
    )
    parser.add_argument(
        "--debris-grace",
        default=f"{int(DEFAULT_DEBRIS_GRACE.total_seconds() // 3600)}h",
        metavar="AGE",
        help="remove incomplete backups untouched for this long (default 24h; a younger one may be running)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    add_json_flag(parser)


def policy_from_args(args: argparse.Namespace) -> RetentionPolicy:
    from pgwarden.api.durations import parse_duration
    from pgwarden.storage.retention import RetentionPolicy, time_zone

    max_age = parse_duration(duration_flag("--max-age", args.max_age)) if args.max_age else None
    grace = parse_duration(duration_flag("--debris-grace", args.debris_grace))
    try:
        return RetentionPolicy(
            keep_last=args.keep_last,
            keep_daily=args.keep_daily,
            keep_weekly=args.keep_weekly,
            keep_monthly=args.keep_monthly,
            keep_yearly=args.keep_yearly,
            max_age=max_age,
            time_zone=time_zone(args.time_zone),
            debris_grace=grace,
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


def render(report: PruneReport) -> list[str]:
    verb = "would delete" if report.dry_run else "deleted"
    whose = f" ({report.owner})" if report.owner else ""
    lines = [
        f"{report.location}{whose}: kept {len(report.kept)}, {verb} {len(report.deleted)} (calendar {report.time_zone})"
    ]
    owners = {item.owner for item in [*report.kept, *report.deleted]}
    show_owner = report.owner is None and len(owners) > 1

    def label(owner: str | None) -> str:
        return f"  [{owner}]" if show_owner and owner else ""

    lines += [f"  keep    {item.id}  ({item.reason}){label(item.owner)}" for item in report.kept]
    lines += [
        f"  {'delete' if report.dry_run else 'deleted'} {item.id}  ({item.reason}){label(item.owner)}"
        for item in report.deleted
    ]
    lines += [f"  debris  {name}  ({verb})" for name in report.debris_removed]
    lines += [f"  debris  {name}  (kept: younger than the grace period)" for name in report.debris_kept]
    return lines


def run(args: argparse.Namespace) -> int:
    from pgwarden.storage import ObjectNotFound, StorageError
    from pgwarden.storage.listing import prune_report
    from pgwarden.storage.manifest import prune

    policy = policy_from_args(args)
    storage = open_location(args.location)
    try:
        result = prune(
            storage,
            policy,
            datetime.now(UTC),
            owner=args.owner,
            every_owner=args.all_owners,
            dry_run=args.dry_run,
            deleted_one=lambda _backup_id: pause_point("prune-deleted"),
        )
    except ObjectNotFound as exc:  # several owners and none chosen, or no backup of the one named
        raise BadInput(str(exc)) from exc
    except StorageError as exc:
        raise PgwardenError(str(exc)) from exc
    report = prune_report(storage, result, dry_run=args.dry_run, time_zone=args.time_zone)
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0
