"""`oee`: the one command for the whole system.

oee up [--brokers N] | down [--purge] | status   the local stack and every service, supervised
oee stack up [--brokers N] | down [--purge] | status  the broker(s) and the database only
oee supervise                         the supervisor in the foreground (what `up` runs in the background)
oee topics create | migrate           the contract's topics; the SQL migrations
oee tail [--from-beginning] [--order ID [--new]]  print the order event log, decoded
oee lag [--watch [S]] [--json]        consumer lag, stage lags and stuck orders (the dashboard: /dashboard)
oee schemas [--check]                 write (or check) docs/schemas/*.json, docs/openapi.json, docs/asyncapi.json
oee test [pytest args]                the test suite (starts what it needs)
oee api | router | triggers | venue | projector  one service in the foreground (`up` starts them all)
oee gateway                          the WebSocket gateway alone, for scale-out (`api` mounts it too)
oee rebuild [--dry-run] [--until T --schema S]  replay the log into fresh tables, verify, swap
oee accounts create NAME [--operator] | key NAME | list | revoke KEY_ID | disable NAME | enable NAME
oee order place|get|list|watch|cancel  trade through the API (OEE_API_KEY under AUTH=keys)
oee deadletters list|show ID|replay ID what failed, why, from where; replay once the cause is fixed
oee drill [--orders N] [--rounds R] ...  the chaos drill on a three-broker stack of its own (docs/drill.md)
oee --version                         the installed version

A command that cannot reach the broker, the database or the API says so in one line on stderr and exits 1
(`services.failures`); LOG_LEVEL=debug adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from services import config
from services.accounts.model import AccountError
from services.envvars import ConfigError
from services.failures import Failure
from services.stack.procs import StackError

# Every subcommand, so compose.yaml and the docs can be checked against what exists.
SUBCOMMANDS: tuple[str, ...] = (
    "up", "down", "status", "stack", "topics", "migrate", "tail", "schemas", "test", "api", "router", "venue",
    "projector", "rebuild", "gateway", "lag", "accounts", "supervise", "order", "deadletters", "triggers",
    "drill", "check",
)  # fmt: skip


def _settings(args: argparse.Namespace | None = None) -> config.Settings:
    return config.load(brokers=getattr(args, "brokers", None))


def cmd_up(args: argparse.Namespace) -> int:
    from services.stack import manager

    settings = _settings(args)
    if args.stack_only:
        manager.stack_up(settings)
    else:
        manager.up(settings)
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    from services.stack.supervised import main

    return main(_settings())


def cmd_down(args: argparse.Namespace) -> int:
    from services.stack import manager

    manager.down(_settings(), purge=args.purge)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from services.stack import manager

    settings = _settings()
    rows, snapshot = manager.status(settings)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "state_dir": str(settings.stack.state_dir),
                    "components": [dataclasses.asdict(r) for r in rows],
                }
            )
        )
        return 0
    window = (snapshot or {}).get("supervisor", {}).get("crash_loop_window_s")
    for row in rows:
        print(row.text(window))
    print(f"state      {settings.stack.state_dir}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from services.stack import manager

    settings = _settings(args)
    if args.action == "up":
        manager.stack_up(settings)
    elif args.action == "down":
        stopped = manager.stack_down(settings, purge=args.purge)
        print(("stopped " + ", ".join(stopped)) if stopped else "the stack was not running")
        if manager.supervisor_running(settings):
            print(
                "note: the supervisor still runs its services (they now lack a broker/database): `oee down` stops all"
            )
    else:
        return cmd_status(args)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from services.stack.topics import create_topics

    settings = _settings()
    report = asyncio.run(
        create_topics(
            settings.bootstrap_servers, settings.topic_prefix, settings.partitions, args.replication_factor
        )
    )
    print(
        f"created: {', '.join(report.created) or 'none'}; already there: {', '.join(report.existing) or 'none'}"
        f"; replication {report.replication.factor}, min ISR {report.replication.min_insync} "
        f"({report.brokers} broker(s))"
    )
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from projections.migrations import migrate, migrate_state

    url = _settings().database_url

    async def both() -> list[str]:
        return await migrate(url, args.schema) + await migrate_state(url)

    applied = asyncio.run(both())
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from services.tail import tail

    settings = _settings()
    try:
        # One order's events are what a person asking for one order expects: its history, then what comes.
        from_beginning = args.from_beginning or (args.order is not None and not args.new)
        asyncio.run(tail(settings, from_beginning, order_id=args.order, limit=args.limit, err=sys.stderr))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from events.schema_export import check_doc, check_schemas, write_doc, write_schemas
    from services.spec import export as specs

    directory = Path(args.dir)
    doc = config.REPO_ROOT / "docs" / "events.md"
    if args.check:
        stale = check_schemas(directory) + ([] if check_doc(doc) else [str(doc)]) + specs.stale()
        if stale:
            print(f"out of date in {directory}: {', '.join(stale)}; run `oee schemas`", file=sys.stderr)
            return 1
        print("schemas up to date")
        return 0
    for path in write_schemas(directory):
        print(path)
    if write_doc(doc):
        print(doc)
    for path in specs.write():
        print(path)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from services.api.server import run

    settings = _settings()
    _expose_supervisor_metrics(settings)
    run(settings)  # ingress, reads, gateway (the seed's wsUrl on this port), pages, lag, metrics
    return 0


def _expose_supervisor_metrics(settings: config.Settings) -> None:
    """The supervisor's restart counts on the API's /metrics too, read from its snapshot at scrape time
    (nothing when no supervisor runs for this state directory)."""
    from prometheus_client import REGISTRY

    from services.metrics.supervisor import SupervisorCollector
    from services.stack.supervisor import read_snapshot

    REGISTRY.register(SupervisorCollector(lambda: read_snapshot(settings.stack.state_dir)))


def cmd_gateway(args: argparse.Namespace) -> int:
    from services.gateway.server import run

    run(_settings())
    return 0


def cmd_router(args: argparse.Namespace) -> int:
    from services import logs
    from services.router.app import run

    settings = _settings()
    logs.setup(settings.log_level, settings.log_format, "oee.router")
    run(settings)
    return 0


def cmd_triggers(args: argparse.Namespace) -> int:
    from services import logs
    from services.triggers.app import run

    settings = _settings()
    logs.setup(settings.log_level, settings.log_format, "oee.triggers")
    run(settings)
    return 0


def cmd_venue(args: argparse.Namespace) -> int:
    from services.venue.server import main as serve

    serve()
    return 0


def cmd_projector(args: argparse.Namespace) -> int:
    from projections.projector import run

    run(_settings())
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from projections.rebuild_cli import main as rebuild

    return rebuild(_settings(), args)


def cmd_lag(args: argparse.Namespace) -> int:
    from services.lag.terminal import show

    settings = _settings()
    url = args.url or f"http://{settings.host}:{settings.port}"
    try:
        return asyncio.run(show(settings, url, as_json=args.json, watch=args.watch, force_direct=args.direct))
    except KeyboardInterrupt:
        return 0


def cmd_accounts(args: argparse.Namespace) -> int:
    from services.accounts.cli import run

    return run(_settings(), args)


def cmd_order(args: argparse.Namespace) -> int:
    from services.client.cli import run

    try:
        return run(_settings(), args)
    except KeyboardInterrupt:
        return 130


def cmd_deadletters(args: argparse.Namespace) -> int:
    from services.deadletters.cli import run

    return run(_settings(), args)


def cmd_drill(args: argparse.Namespace) -> int:
    from services.drill.options import from_args
    from services.drill.runner import DrillError, main

    try:
        return main(from_args(args))
    except (DrillError, ConfigError) as exc:  # 2: no verdict (1 is a drill that found something)
        print(f"oee drill: {exc}", file=sys.stderr)
        return 2


# What `oee check` runs, in order: lint, formatting, types (pyproject.toml configures each).
CHECKS: tuple[tuple[str, ...], ...] = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),
)


def cmd_check(args: argparse.Namespace) -> int:
    import subprocess

    failed = []
    for command in CHECKS:
        print("oee check: " + " ".join(command), file=sys.stderr, flush=True)
        # The tools of the running interpreter's environment (the project's .venv), not whatever is on PATH.
        if subprocess.run([sys.executable, "-m", *command], cwd=config.REPO_ROOT).returncode != 0:
            failed.append(command[0] + (f" {command[1]}" if len(command) > 1 else ""))
    if failed:
        print(f"oee check: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    os.chdir(config.REPO_ROOT)
    # CPython 3.11 before 3.11.8 (this machine has 3.11.7) shares the AST constructor's recursion counter
    # between threads (cpython#106905): pytest parsing a failed test's source while another thread formats a
    # traceback (3.11 parses each line's segment to draw its ^^^ carets) crashes the whole run with
    # "SystemError: AST constructor recursion depth mismatch", hiding every later result. Without column
    # ranges in code objects no traceback parses anything; pytest's own parse then has the counter alone.
    os.environ.setdefault("PYTHONNODEBUGRANGES", "1")
    pytest_args = list(args.pytest_args) or list(WHOLE_SUITE_ARGS)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *pytest_args])


# The whole suite (no arguments, as CI runs it) in two xdist workers, a test file to each at a time: most of its
# time is spent waiting (stacks starting, services recovering, brokers electing), not computing - run alone it
# keeps ~1 of the 2 cores busy - so two files at once halve the wall time. Arguments replace these: a chosen
# test or file runs in this process (add `-n 2` for workers). The local stack is started once for all workers
# (tests/conftest.py). Decision 0028.
WHOLE_SUITE_ARGS: tuple[str, ...] = ("-n", "2", "--dist", "loadfile")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oee", description="Event-sourced order execution engine")
    parser.add_argument("--version", "-V", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        commands[name] = fn
        p = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    brokers_help = (
        "Kafka nodes of a new local cluster (default: OEE_KAFKA_BROKERS, else as formatted, else 1)"
    )
    p = add("up", cmd_up, "start the local stack and every service, supervised (idempotent)")
    p.add_argument("--stack-only", action="store_true", help="broker, database, topics and schema only")
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    p = add("down", cmd_down, "stop what `up` started")
    p.add_argument("--purge", action="store_true", help="also delete the broker's and the database's data")
    p = add("status", cmd_status, "what runs where: pids, restarts, last exits, crash loops")
    p.add_argument("--json", action="store_true", help="one JSON object (components: name, state, pid, ...)")
    p = add("stack", cmd_stack, "the broker(s) and the database only")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--purge", action="store_true")
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    add("supervise", cmd_supervise, "the supervisor in the foreground (`up` runs it in the background)")
    p = add("topics", cmd_topics, "create the contract's topics (idempotent)")
    p.add_argument("action", choices=["create"])
    p.add_argument(
        "--replication-factor",
        type=int,
        metavar="N",
        help="copies of each partition (default: min(3, brokers); 1 is refused on a multi-broker cluster)",
    )
    p = add("migrate", cmd_migrate, "apply the SQL migrations in sql/ (projections) and sql/state/")
    p.add_argument("--schema", default="public")
    p = add("tail", cmd_tail, "print the order event log, decoded")
    p.add_argument("--from-beginning", action="store_true", help="the log's history first, then new events")
    p.add_argument("--order", help="only this order id: its history, then new events (--new: new ones only)")
    p.add_argument("--new", action="store_true", help="with --order: only events from now on")
    p.add_argument("--limit", type=int, default=0, help="stop after this many records (0: follow forever)")
    p = add("schemas", cmd_schemas, "write docs/schemas/*.json from the event classes")
    p.add_argument("--check", action="store_true", help="fail if docs/schemas is out of date")
    p.add_argument("dir", nargs="?", default=str(config.REPO_ROOT / "docs" / "schemas"))
    add("api", cmd_api, "the HTTP ingress (and the API's other routes) in the foreground")
    add("gateway", cmd_gateway, "the WebSocket gateway alone (GATEWAY_PORT) in the foreground, for scale-out")
    add("router", cmd_router, "the order router (a Faust worker) in the foreground")
    add(
        "triggers",
        cmd_triggers,
        "the trigger engine (limit and sniper orders against market data) in the foreground",
    )
    add("venue", cmd_venue, "the simulated DEX venues (Raydium, Meteora) over HTTP in the foreground")
    add("projector", cmd_projector, "the projector (event log -> Postgres order tables) in the foreground")
    p = add("rebuild", cmd_rebuild, "rebuild the order projection by replaying the log (verify, then swap)")
    from projections.rebuild_cli import add_arguments as rebuild_arguments

    rebuild_arguments(p)
    p = add("lag", cmd_lag, "consumer lag, stage lags and stuck orders (from the API's /api/lag)")
    p.add_argument("--url", help="the API (default http://HOST:PORT)")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="S", help="refresh every S s (2)")
    p.add_argument("--direct", action="store_true", help="sample from this process instead of the API")
    p = add("accounts", cmd_accounts, "accounts and API keys: create, key, list, revoke, disable, enable")
    from services.accounts.cli import add_arguments as accounts_arguments

    accounts_arguments(p)
    p = add("order", cmd_order, "trade through the API: place, get, list, watch, cancel")
    from services.client.cli import add_arguments as order_arguments

    order_arguments(p)
    p = add(
        "deadletters", cmd_deadletters, "dead letters of the router and the projector: list, show, replay"
    )
    from services.deadletters.cli import add_arguments as deadletter_arguments

    deadletter_arguments(p)

    p = add(
        "drill", cmd_drill, "the chaos drill: orders, subscribers and faults on a stack of its own, checked"
    )
    from services.drill.options import add_arguments as drill_arguments

    drill_arguments(p)
    add("check", cmd_check, "lint, formatting and types: ruff check, ruff format --check, mypy")
    p = add("test", cmd_test, "run the test suite")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    assert set(commands) == set(SUBCOMMANDS), "SUBCOMMANDS must list every subcommand"
    return parser


def version() -> str:
    """`oee --version`: the installed package's version and the Python running it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        ours = installed("order-execution-engine")
    except PackageNotFoundError:  # run from a source tree without installing
        ours = "unknown"
    return f"oee {ours} (python {sys.version.split()[0]})"


# Services run until stopped and log for themselves; every other command is a tool that prints its answer.
SERVICES = frozenset({"api", "router", "venue", "projector", "gateway"})


def _quiet_libraries() -> None:
    """Tools print one line when something is down: the libraries' own retry chatter (aiokafka logs every
    refused connection at ERROR) stays out of it unless LOG_LEVEL=debug."""
    import logging

    level = os.environ.get("LOG_LEVEL", "").strip().lower()
    if level == "debug":
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        return
    for name in ("aiokafka", "kafka", "asyncio", "httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _reader_went_away() -> int:
    """`oee order get ID | head -1`: the reader closed the pipe, which is no failure to report. Python's
    own flush of stdout at exit would raise again: point stdout at /dev/null first. 141 = 128 + SIGPIPE,
    what a shell reports for a tool the signal ended (the pipeline's status is the reader's anyway)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        # Everything after `test` is pytest's, options first included (`oee test -q -x`): argparse's
        # REMAINDER refuses a first argument that starts with '-'.
        return cmd_test(argparse.Namespace(pytest_args=argv[1:]))
    if argv[:1] in (["--version"], ["-V"]):
        print(version())
        return 0
    args = build_parser().parse_args(argv)
    if args.command not in SERVICES:
        _quiet_libraries()
    try:
        code = int(args.fn(args) or 0)
        sys.stdout.flush()  # output still buffered meets a closed pipe here, not in Python's exit
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except (StackError, ConfigError, AccountError, Failure) as exc:
        print(f"oee {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Never a traceback: one line saying what did not answer (or what broke), exit 1.
        from services.failures import one_line

        try:
            settings: config.Settings | None = config.load()
        except ConfigError:
            settings = None
        print(f"oee {args.command}: {one_line(exc, settings, getattr(args, 'url', None))}", file=sys.stderr)
        import logging

        logging.getLogger("oee.cli").debug("traceback of the failure above", exc_info=exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
