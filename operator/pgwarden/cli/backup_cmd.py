"""`pgwarden backup`: dump a database through our compression to a path or S3, manifest last."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.api.choices import DEFAULT_LOCK_WAIT_TIMEOUT, BackupFormat
from pgwarden.api.sizes import human_size
from pgwarden.cli.output import add_database_arg, add_json_flag, describe_recovered, duration_flag
from pgwarden.engine.backup.compression import DEFAULT_COMPRESSION
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.reports import BackupReport

NAME = "backup"
HELP = "back up a database to a path or s3://bucket/prefix"
DESCRIPTION = (
    "Stream pg_dump through pgwarden's compression and SHA-256 to storage; the backup "
    "exists once its manifest.json is written, last. S3 endpoint from AWS_ENDPOINT_URL."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument("--to", required=True, metavar="URI", help="s3://bucket/prefix or a filesystem path")
    parser.add_argument(
        "--format",
        choices=[f.value for f in BackupFormat],
        default="custom",
        help="pg_dump format (default custom)",
    )
    parser.add_argument(
        "--compress",
        default=str(DEFAULT_COMPRESSION),
        metavar="SPEC",
        help="zstd[:level], lz4[:level], gzip[:level] or none (default zstd:3)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="parallel pg_dump jobs (directory format only)"
    )
    for flag, what in (
        ("--schema", "dump only schemas matching PATTERN (repeatable, as pg_dump -n)"),
        ("--exclude-schema", "leave out schemas matching PATTERN (as pg_dump -N)"),
        ("--table", "dump only tables matching PATTERN (as pg_dump -t)"),
        ("--exclude-table", "leave out tables matching PATTERN (as pg_dump -T)"),
    ):
        parser.add_argument(flag, action="append", default=[], metavar="PATTERN", help=what)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="restore into a scratch database, compare row counts, drop it, record verified",
    )
    parser.add_argument(
        "--encrypt-to",
        action="append",
        default=[],
        metavar="AGE_RECIPIENT",
        help="seal the stored dump with age to this public key (age1…; repeatable: any one identity opens it). "
        "Restoring then needs --identity",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="an age identity file of one of the --encrypt-to recipients; needed by --verify of a sealed backup",
    )
    parser.add_argument(
        "--copy-to",
        action="append",
        default=[],
        metavar="URI",
        help="once complete, copy the backup to this further storage too and verify it there by checksum "
        "(repeatable; server-side when both are the same S3 service)",
    )
    parser.add_argument(
        "--owner",
        metavar="LABEL",
        help="record whose backup this is (e.g. shop-nightly); default: the database (host:port/dbname). "
        "`backups`, `prune` and `restore --from PREFIX` tell owners apart",
    )
    parser.add_argument(
        "--lock-wait-timeout",
        default=DEFAULT_LOCK_WAIT_TIMEOUT,
        metavar="DURATION",
        help=f"give up when a table stays locked by another session this long (default {DEFAULT_LOCK_WAIT_TIMEOUT};"
        " 30s, 1m30s; 0s waits for ever)",
    )
    add_json_flag(parser)


def render(report: BackupReport) -> list[str]:
    if report.backup is None:
        return [f"backup failed: {report.error.message if report.error else 'unknown error'}"]
    copies = [
        f"  copy         {c.location} ({'verified' if c.verified else 'FAILED: ' + (c.error or '')})"
        for c in report.copies or []
    ]
    info = report.backup
    lines = [
        f"backup {info.id} complete{' and verified' if info.verified else ''}",
        f"  location     {info.location}",
        f"  size         {human_size(info.size_bytes)} ({report.format}, {report.compression})",
        f"  sha256       {info.sha256}",
        f"  sealed       age, to {len(report.encryption.recipients)} recipient(s)"
        if report.encryption
        else "",
        f"  contents     {report.tables} tables, {report.rows:,} rows" if report.rows is not None else "",
        f"  versions     server {report.server_version}, pg_dump {report.pg_dump_version}",
        f"  duration     {report.duration_seconds:.1f}s" if report.duration_seconds is not None else "",
    ]
    if report.error:
        lines.append(f"  error        {report.error.message}")
    return [line for line in [*lines, *copies] if line]


def run(args: argparse.Namespace) -> int:
    from pgwarden.engine.backup.backup import take_backup
    from pgwarden.engine.backup.encryption import load_identities
    from pgwarden.engine.backup.options import BackupOptions
    from pgwarden.engine.backup.selection import DumpSelection
    from pgwarden.engine.recovery.recover import settle_first
    from pgwarden.engine.restore.verify import verify_backup

    options = BackupOptions(
        format=args.format,
        compression=args.compress,
        jobs=args.jobs,
        verify=verify_backup if args.verify else None,
        selection=DumpSelection(
            schemas=tuple(args.schema),
            exclude_schemas=tuple(args.exclude_schema),
            tables=tuple(args.table),
            exclude_tables=tuple(args.exclude_table),
        ),
        owner=args.owner,
        encrypt_to=args.encrypt_to,
        copy_to=args.copy_to,
        identities=load_identities(args.identity) if args.identity else (),
        lock_wait_timeout=duration_flag("--lock-wait-timeout", args.lock_wait_timeout),
    )
    recovered = settle_first(args.database_url, progress)
    report = take_backup(args.database_url, args.to, options, progress)
    report.recovered = recovered
    if args.json:
        print_json(report)
    else:
        print_text([*describe_recovered(recovered), *render(report)])
    return 0 if report.outcome == "Succeeded" else 1
