"""`oee deadletters`: what failed, why, where it came from, and a replay once the cause is fixed.

    oee deadletters list [--source router|projector] [--limit N]   newest first (N per source, default 50)
    oee deadletters show ID                                          everything about one, the record included
    oee deadletters replay ID                                        append it once to where it came from

IDs: `router/P/O` (partition P, offset O of the dead-letter topic) and `projector/P/O` (partition P, offset O
of the event log, a row of `projector_dead_letters` in PROJECTION_SCHEMA). A second replay of an id is refused
(`oee_state.dead_letter_replays`, decision 0022).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from projections.settings import schema_from_env
from services.config import Settings
from services.deadletters import book
from services.deadletters.model import LIST_HEADER, MAX_LIST, BadId, list_line, show
from services.failures import Failure

ACTIONS = ("list", "show", "replay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("id", nargs="?", help="show, replay: router/P/O or projector/P/O (as list shows)")
    parser.add_argument("--source", choices=["router", "projector"], help="list: only this source")
    parser.add_argument("--limit", type=int, default=50, help=f"list: newest N per source (1..{MAX_LIST})")


def run(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.action != "list" and not args.id:
        raise Failure(f"`oee deadletters {args.action}` needs an id (router/P/O or projector/P/O: see list)")
    if not 1 <= args.limit <= MAX_LIST:
        raise Failure(f"--limit must be 1..{MAX_LIST}, got {args.limit}")
    where = book.Where.of(settings, schema_from_env())
    try:
        return asyncio.run(_run(where, args, out))
    except BadId as exc:
        raise Failure(str(exc)) from None


async def _run(where: book.Where, args: argparse.Namespace, out: TextIO) -> int:
    match args.action:
        case "list":
            found = await book.listing(where, args.source, args.limit)
            if not found:
                print("no dead letters", file=out)
                return 0
            print(LIST_HEADER, file=out)
            for d in found:
                print(list_line(d), file=out)
        case "show":
            print(show(await book.find(where, args.id)), file=out)
        case "replay":
            done = await book.replay(where, args.id)
            how = "an earlier attempt's copy was found" if done.found else "appended"
            print(
                f"replayed {done.dead_letter}: {how} at {done.topic}[{done.partition}]@{done.offset}",
                file=out,
            )
    return 0
