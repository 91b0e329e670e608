"""`oee up` / `down` / `status`: the local stack (broker(s), database, topics, schema) and the supervisor that
keeps the services on it running.

A part given from outside (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL) is used, never started or stopped here.
Everything started here is recorded by pid under the state directory; `down` stops exactly those pids.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.config import Settings
from services.stack import kafka, postgres, venue_secret
from services.stack.lineup import SERVICES, service_port
from services.stack.procs import Managed, StackError, file_lock
from services.stack.supervisor import SUPERVISOR, read_snapshot
from services.stack.supervisor_options import SupervisorOptions


def stack_up(settings: Settings, echo: bool = True) -> None:
    cfg = settings.stack
    say: Callable[..., None] = print if echo else (lambda *a, **k: None)
    if cfg.external_kafka:
        say(f"broker    external  {cfg.external_kafka}")
    else:
        pids = kafka.start(cfg)
        for node in cfg.kafka_nodes:
            what = f"Apache Kafka {cfg.kafka_version}, KRaft" if node.node_id == 1 else "KRaft"
            of = f", node {node.node_id} of {len(pids)}" if len(pids) > 1 else ""
            say(f"broker    pid {pids[node.node_id]:<6} {node.address}  ({what}{of})")
    if cfg.external_database:
        say("database  external  DATABASE_URL")
    else:
        pid = postgres.start(cfg)
        say(f"database  pid {pid:<6} {cfg.database_url}")
    asyncio.run(_prepare(settings, say))


async def _prepare(settings: Settings, say: Callable[..., None]) -> None:
    from projections.migrations import migrate, migrate_state
    from services.stack.topics import create_topics

    report = await create_topics(settings.bootstrap_servers, settings.topic_prefix, settings.partitions)
    replicas = f", {report.replication.factor} replica(s), min ISR {report.replication.min_insync}"
    say(f"topics    {len(report.created)} created, {len(report.existing)} already there{replicas}")
    for warning in report.warnings:
        say(f"warning   {warning}")
    applied = await migrate(settings.database_url) + await migrate_state(settings.database_url)
    say(f"schema    {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))


def stack_down(settings: Settings, purge: bool = False) -> list[str]:
    """Stop the database and the broker node(s) this stack runs; the names that were running."""
    cfg = settings.stack
    stopped = [n for n, stop in (("postgres", postgres.stop), ("kafka", kafka.stop)) if stop(cfg)]
    if purge:
        kafka.purge(cfg)
        postgres.purge(cfg)
    return stopped


def up(settings: Settings, echo: bool = True) -> None:
    """The stack, then the supervisor (started unless one runs), then wait until every service is ready."""
    state = settings.stack.state_dir
    with file_lock(state / "run" / "up.lock"):  # two `up`s at once would start two supervisors' worth
        stack_up(settings, echo)
        venue_secret.ensure(state)  # before the supervisor: it hands the secret to the venue and the router
        supervisor = Managed(SUPERVISOR, state)
        if supervisor.pid() is None:
            argv = [sys.executable, "-m", "services.cli", "supervise"]
            env = _supervisor_env(settings)
            supervisor.start(argv, env=env, output=state / "logs" / f"{SUPERVISOR}.out")
        components = wait_services_ready(settings)
    if echo:
        pid = supervisor.pid()
        print(f"{SUPERVISOR:<9} pid {pid:<6} log {state / 'logs' / (SUPERVISOR + '.log')}")
        for c in components:
            port = service_port(settings, next(s for s in SERVICES if s.name == c["name"]))
            where = f"http://{settings.host}:{port}" if port else ""
            print(f"{c['name']:<9} pid {c['pid']:<6} {where}  log {c['log']}")


def _supervisor_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # The cluster as it is now: the supervisor must find the same node count however `up` was asked.
    env["OEE_KAFKA_BROKERS"] = str(settings.stack.kafka_brokers)
    return env


def wait_services_ready(settings: Settings) -> list[dict[str, Any]]:
    """Until the supervisor reports every service running; a one-line StackError when one crash-loops, the
    supervisor dies, or the start timeout passes (the supervisor goes on trying: `oee down` stops it)."""
    state = settings.stack.state_dir
    names = [s.name for s in SERVICES]
    deadline = time.monotonic() + settings.stack.start_timeout
    supervisor = Managed(SUPERVISOR, state)
    snapshot: dict[str, Any] | None = None
    while True:
        if supervisor.pid() is None:
            tail = supervisor.log_tail(1) or _tail(state / "logs" / f"{SUPERVISOR}.out")
            raise StackError(f"the supervisor exited; see {state / 'logs'}/{SUPERVISOR}.log: {tail[:200]}")
        snapshot = read_snapshot(state)
        services = {c["name"]: c for c in (snapshot or {}).get("components", ()) if c["name"] in names}
        for name in names:
            c = services.get(name)
            if c and c["crash_loop"]:
                raise StackError(
                    f"{name} is crash-looping ({c['recent_restarts']} restarts, last: {c['last_exit']}); see "
                    f"{c['log']}; the supervisor keeps restarting it (`oee status`; `oee down` stops all)"
                )
        if len(services) == len(names) and all(services[n]["state"] == "running" for n in names):
            return [services[n] for n in names]
        if time.monotonic() > deadline:
            late = [n for n in names if n not in services or services[n]["state"] != "running"]
            c = services.get(late[0], {})
            raise StackError(
                f"{late[0]} is not ready after {settings.stack.start_timeout:.0f} s "
                f"({c.get('state', 'not started')}, last exit: {c.get('last_exit')}); see {c.get('log')} "
                "(the supervisor keeps trying; `oee status`, `oee down`)"
            )
        time.sleep(0.2)


def _tail(path: Any) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def down(settings: Settings, purge: bool = False, echo: bool = True) -> None:
    cfg = settings.stack
    stopped = []
    options = SupervisorOptions.from_env()
    # The supervisor stops its services (SIGTERM, then SIGKILL after SUPERVISOR_STOP_TIMEOUT_S each).
    grace = options.stop_timeout_s * len(SERVICES) + 15
    if Managed(SUPERVISOR, cfg.state_dir).stop(signal.SIGTERM, timeout=grace):
        stopped.append(SUPERVISOR)
    # Whatever is still there: services a killed supervisor left, or ones started before supervision.
    for service in reversed(SERVICES):
        if Managed(service.name, cfg.state_dir).stop(signal.SIGTERM, timeout=options.stop_timeout_s):
            stopped.append(service.name)
    stopped += stack_down(settings, purge)
    if purge:
        for leftover in ("logs", "venue", "faust", "run"):
            shutil.rmtree(cfg.state_dir / leftover, ignore_errors=True)
        venue_secret.path(cfg.state_dir).unlink(missing_ok=True)
    if echo:
        print(("stopped " + ", ".join(stopped)) if stopped else "nothing of this stack was running")
        if purge:
            print(f"purged the data under {cfg.state_dir}")


@dataclass(frozen=True)
class Row:
    """One line of `oee status`."""

    name: str
    state: str  # "running pid 123", "stopped", "external", "backoff (3 s)", ...
    where: str
    restarts: int | None = None  # None: not supervised
    last_exit: str | None = None
    alert: str | None = None  # "CRASH-LOOP: 6 restarts in 120 s"


def status(settings: Settings) -> list[Row]:
    """A row for the supervisor and for everything it keeps running (or would, were it running)."""
    cfg = settings.stack
    snapshot = read_snapshot(cfg.state_dir)
    supervised = {c["name"]: c for c in (snapshot or {}).get("components", ())}
    window = (snapshot or {}).get("supervisor", {}).get("crash_loop_window_s", 0)
    now = time.time()

    def row(name: str, pid: int | None, where: str) -> Row:
        c = supervised.get(name)
        if c is None:  # no supervisor runs (or it does not watch this): what the pid file says
            return Row(name, f"running pid {pid}" if pid else "stopped", where)
        state = c["state"]
        if state in ("running", "starting") and c["pid"]:
            state = f"{state} pid {c['pid']}"
        elif state == "backoff" and c["next_start_at"]:
            state = f"backoff ({max(0.0, c['next_start_at'] - now):.0f} s)"
        last = c["last_exit"] and f"{c['last_exit']} {_ago(now - c['last_exit_at'])}"
        alert = f"CRASH-LOOP: {c['recent_restarts']} restarts in {window:.0f} s" if c["crash_loop"] else None
        return Row(name, state, where, c["restarts"], last, alert)

    sup = Managed(SUPERVISOR, cfg.state_dir).pid()
    metrics = (snapshot or {}).get("supervisor", {}).get("metrics") or ""
    rows = [Row(SUPERVISOR, f"running pid {sup}" if sup else "stopped", metrics)]
    if cfg.external_kafka:
        rows.append(Row("kafka", "external", cfg.external_kafka))
    else:
        for node in cfg.kafka_nodes:
            rows.append(row(node.name, kafka.managed(cfg, node).pid(), node.address))
    if cfg.external_database:
        rows.append(Row("postgres", "external", "DATABASE_URL"))
    else:
        rows.append(row("postgres", postgres.managed(cfg).pid(), cfg.database_url))
    for service in SERVICES:
        port = service_port(settings, service)
        pid = Managed(service.name, cfg.state_dir).pid()
        r = row(service.name, pid, f":{port}" if port else "-")
        if snapshot is None and pid:
            r = Row(r.name, r.state, r.where, alert="unsupervised (no supervisor runs: `oee up` replaces it)")
        rows.append(r)
    return rows


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def restart_broker(settings: Settings, node_id: int = 1) -> int:
    """Stop one broker node gracefully and start it again; its new pid."""
    kafka.stop_node(settings.stack, node_id)
    return kafka.start_node(settings.stack, node_id)
