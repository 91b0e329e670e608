"""`oee rebuild`: the command line of `projections.rebuild` (kept import-light: the CLI builds its parser eagerly).

    oee rebuild                         rebuild into rebuild_<ts>, verify against live, swap if identical
    oee rebuild --dry-run               the same, but only report the differences
    oee rebuild --force                 swap even if the rebuilt tables differ from live (repairs live)
    oee rebuild --schema NAME           replay into NAME and keep it there (no verify, no swap)
    oee rebuild --until T [--schema N]  the state as it was at T (events with occurred_at <= T), into N

Exit status: 0 done (swapped, identical, or built for inspection); 1 differences found and nothing swapped;
2 bad arguments or a refused target schema.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z or an offset like +00:00")
    return value.astimezone(UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="verify against live and report; swap nothing")
    parser.add_argument("--force", action="store_true", help="swap even when the rebuilt tables differ")
    parser.add_argument(
        "--keep", action="store_true", help="keep the rebuilt (or retired) schema for inspection"
    )
    parser.add_argument("--schema", help="build into this schema for inspection (no verify, no swap)")
    parser.add_argument(
        "--until", type=_instant, help="point in time (ISO 8601 with zone): events up to it only"
    )
    parser.add_argument("--batch", type=int, default=5000, help="records per batch (default 5000)")
    parser.add_argument(
        "--workers", type=int, default=0, help="replay processes (default: one per core, at most 4)"
    )
    parser.add_argument(
        "--until-slack", type=float, default=600.0, metavar="SECONDS",
        help="with --until, read records stamped up to this long after it (default 600; -1: the whole log)",
    )  # fmt: skip
    parser.add_argument(
        "--wait-live", type=float, default=30.0, metavar="SECONDS",
        help="how long to wait for the live projector to reach the rebuilt positions (default 30)",
    )  # fmt: skip


def main(settings: object, args: argparse.Namespace) -> int:
    from projections.build import BuildError, default_workers
    from projections.migrations import MigrationError, quote_ident
    from projections.rebuild import RebuildError, RebuildOptions, rebuild
    from projections.settings import schema_from_env
    from services.config import Settings
    from services.envvars import ConfigError

    assert isinstance(settings, Settings)
    try:
        if args.schema is not None:
            quote_ident(args.schema)
        if args.dry_run and (args.schema or args.until):
            raise RebuildError("--dry-run compares with live; it does not go with --schema or --until")
        if not 1 <= args.batch <= 100_000:
            raise RebuildError("--batch must be from 1 to 100000")
        if not 0 <= args.workers <= 64:
            raise RebuildError("--workers must be from 0 (one per core) to 64")
        options = RebuildOptions(
            live_schema=schema_from_env(),
            schema=args.schema,
            until=args.until,
            dry_run=args.dry_run,
            force=args.force,
            keep=args.keep,
            batch_max=args.batch,
            until_slack_s=args.until_slack,
            wait_live_s=args.wait_live,
            workers=args.workers or default_workers(),
        )
        if options.schema == options.live_schema:
            raise RebuildError(f"--schema {options.schema} is the live projection's schema")
        report = asyncio.run(rebuild(settings, options))
    except (BuildError, MigrationError, ConfigError) as exc:
        print(f"oee rebuild: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}")
    if report.comparison is not None:
        for line in report.comparison.lines():
            print(line)
    print(report.summary())
    if report.retired and args.keep:
        print(f"the previous live tables are kept in schema {report.retired}")
    if (
        report.mode != "inspect"
        and not report.swapped
        and not (report.comparison and report.comparison.identical)
    ):
        return 1
    return 0
