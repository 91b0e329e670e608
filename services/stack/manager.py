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
from services.stack import kafka, postgres, settings_record, venue_secret
from services.stack.lineup import (
    instances_on_disk,
    is_service_instance,
    lineup,
    service_host,
    service_port,
)
from services.stack.procs import Managed, StackError, file_lock, port_open
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


def supervisor_running(settings: Settings) -> bool:
    return Managed(SUPERVISOR, settings.stack.state_dir).pid() is not None


def up(settings: Settings, echo: bool = True) -> None:
    """The stack, then the supervisor (started unless one runs), then wait until every service is ready.

    Every check that can refuse comes before anything starts: a running supervisor with other settings, a
    service port another program holds (a broker or database port is checked as each starts)."""
    state = settings.stack.state_dir
    with file_lock(state / "run" / "up.lock"):  # two `up`s at once would start two supervisors' worth
        supervisor = Managed(SUPERVISOR, state)
        env = _supervisor_env(settings)
        if supervisor.pid() is not None:
            _require_same_settings(settings, env)
        else:
            _require_service_ports_free(settings)
        stack_up(settings, echo)
        venue_secret.ensure(state)  # before the supervisor: it hands the secret to the venue and the router
        if supervisor.pid() is None:
            argv = [sys.executable, "-m", "services.cli", "supervise"]
            supervisor.start(argv, env=env, output=state / "logs" / f"{SUPERVISOR}.out")
        components = wait_services_ready(settings)
    if echo:
        pid = supervisor.pid()
        print(f"{SUPERVISOR:<9} pid {pid:<6} log {state / 'logs' / (SUPERVISOR + '.log')}")
        for c in components:
            print(f"{c['name']:<9} pid {c['pid']:<6} {c.get('address') or ''}  log {c['log']}")


def _require_same_settings(settings: Settings, env: dict[str, str]) -> None:
    """The running supervisor keeps the settings it was started with (its services get them at each
    restart): asking for others must say so, by name only (values may be secrets), and change nothing."""
    names = settings_record.changed(settings.stack.state_dir, env)
    if names:
        raise StackError(
            f"the stack in {settings.stack.state_dir} is already running with other settings than this "
            f"environment's ({', '.join(names)}) and keeps its own; to apply these: `oee down` then `oee up`"
        )


def _require_service_ports_free(settings: Settings) -> None:
    """A port some other program holds would only show as a crash loop later: say so now, in one line.
    (A port held by our own service that a killed supervisor left is fine: the new supervisor replaces it.)"""
    for service in lineup():
        port = service_port(settings, service)
        if port is None or Managed(service.name, settings.stack.state_dir).pid() is not None:
            continue
        if port_open(port, service_host(settings, service)):
            raise StackError(
                f"port {port} for {service.name} is already in use by another process; stop it or set "
                f"{service.http_port_env}"
            )


def _supervisor_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # The cluster as it is now: the supervisor must find the same node count however `up` was asked.
    env["OEE_KAFKA_BROKERS"] = str(settings.stack.kafka_brokers)
    return env


def wait_services_ready(settings: Settings) -> list[dict[str, Any]]:
    """Until the supervisor reports every service running; a one-line StackError when one crash-loops, the
    supervisor dies, or the start timeout passes (the supervisor goes on trying: `oee down` stops it)."""
    state = settings.stack.state_dir
    asked = [s.name for s in lineup()]
    deadline = time.monotonic() + settings.stack.start_timeout
    supervisor = Managed(SUPERVISOR, state)
    snapshot: dict[str, Any] | None = None
    while True:
        if supervisor.pid() is None:
            out = state / "logs" / f"{SUPERVISOR}.out"  # its stderr: a start-up error or a traceback
            raise StackError(
                f"the supervisor exited; see {out} and {supervisor.log_file}: {(_tail(out) or supervisor.log_tail(1))[:200]}"
            )
        snapshot = read_snapshot(state)
        # What the running supervisor runs (perhaps started earlier with other counts), else what was asked.
        supervised = [c["name"] for c in (snapshot or {}).get("components", ()) if c["kind"] == "service"]
        names = supervised or asked
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
    grace = options.stop_timeout_s * max(len(instances_on_disk(cfg.state_dir)), 4) + 15
    if Managed(SUPERVISOR, cfg.state_dir).stop(signal.SIGTERM, timeout=grace):
        stopped.append(SUPERVISOR)
    # Whatever is still there: services a killed supervisor left, or ones started before supervision.
    for name in reversed(instances_on_disk(cfg.state_dir)):
        if Managed(name, cfg.state_dir).stop(signal.SIGTERM, timeout=options.stop_timeout_s):
            stopped.append(name)
    stopped += stack_down(settings, purge)
    if purge:
        for leftover in ("logs", "venue", "faust", "faust-triggers", "run"):
            shutil.rmtree(cfg.state_dir / leftover, ignore_errors=True)
        venue_secret.path(cfg.state_dir).unlink(missing_ok=True)
    if echo:
        print(("stopped " + ", ".join(stopped)) if stopped else "nothing of this stack was running")
        if purge:
            print(f"purged the data under {cfg.state_dir}")


@dataclass(frozen=True)
class Row:
    """One component in `oee status` (`--json` prints these as they are)."""

    name: str
    state: str  # running, starting, backoff, stopped, external
    where: str
    pid: int | None = None
    supervised: bool = False
    restarts: int | None = None  # None: not supervised (no supervisor runs, or it does not watch this)
    recent_restarts: int | None = None  # within the crash-loop window
    crash_loop: bool = False
    last_exit: str | None = None
    last_exit_ago_s: float | None = None
    next_start_in_s: float | None = None  # while in backoff
    hung: int | None = None  # killed for not answering its liveness probe; None: not probed
    probe_failures: int = 0  # liveness probes failed in a row, now

    def text(self, window_s: float | None = None) -> str:
        state = f"{self.state} pid {self.pid}" if self.pid else self.state
        if self.state == "backoff" and self.next_start_in_s is not None:
            state += f" ({self.next_start_in_s:.0f} s)"
        line = f"{self.name:<10} {state:<20} {self.where:<36}"
        if self.restarts is not None:
            line += f" restarts {self.restarts:<3}"
        if self.hung:
            line += f" hung {self.hung}"
        if self.probe_failures:
            line += f"  NOT ANSWERING: {self.probe_failures} liveness probes in a row"
        if self.last_exit and self.last_exit_ago_s is not None:
            line += f" last exit: {self.last_exit} {_ago(self.last_exit_ago_s)}"
        if self.crash_loop:
            line += f"  CRASH-LOOP: {self.recent_restarts} restarts in {window_s or 0:.0f} s"
        if self.pid and not self.supervised and is_service_instance(self.name):
            line += "  unsupervised (no supervisor runs: `oee up` replaces it)"
        return line.rstrip()


def status(settings: Settings) -> tuple[list[Row], dict[str, Any] | None]:
    """A row for the supervisor and for everything it keeps running (or would, were it running), and the
    supervisor's snapshot (None when none runs)."""
    cfg = settings.stack
    snapshot = read_snapshot(cfg.state_dir)
    supervised = {c["name"]: c for c in (snapshot or {}).get("components", ())}
    now = time.time()

    def row(name: str, pid: int | None, where: str) -> Row:
        c = supervised.get(name)
        if c is None:  # what the pid file says
            return Row(name, "running" if pid else "stopped", where, pid)
        return Row(
            name,
            c["state"],
            where,
            c["pid"],
            supervised=True,
            restarts=c["restarts"],
            recent_restarts=c["recent_restarts"],
            crash_loop=c["crash_loop"],
            last_exit=c["last_exit"],
            last_exit_ago_s=now - c["last_exit_at"] if c["last_exit_at"] else None,
            next_start_in_s=max(0.0, c["next_start_at"] - now) if c["next_start_at"] else None,
            hung=c.get("hung") if c.get("probe") else None,  # a snapshot of an older supervisor has none
            probe_failures=c.get("probe_failures", 0),
        )

    sup = Managed(SUPERVISOR, cfg.state_dir).pid()
    metrics = (snapshot or {}).get("supervisor", {}).get("metrics") or ""
    rows = [Row(SUPERVISOR, "running" if sup else "stopped", metrics, sup)]
    if cfg.external_kafka:
        rows.append(Row("kafka", "external", cfg.external_kafka))
    else:
        for node in cfg.kafka_nodes:
            rows.append(row(node.name, kafka.managed(cfg, node).pid(), node.address))
    if cfg.external_database:
        rows.append(Row("postgres", "external", "DATABASE_URL"))
    else:
        rows.append(row("postgres", postgres.managed(cfg).pid(), cfg.database_url))
    # The instances the running supervisor runs, else those this environment asks for; and any other one
    # with a pid file (left by a supervisor that ran other counts).
    ports = {s.name: service_port(settings, s) for s in lineup()}
    names = [c["name"] for c in (snapshot or {}).get("components", ()) if c["kind"] == "service"] or list(
        ports
    )
    names += [n for n in instances_on_disk(cfg.state_dir) if n not in names]
    for name in names:
        address = (supervised.get(name) or {}).get("address")
        port = address.rsplit(":", 1)[1] if address else ports.get(name)
        rows.append(row(name, Managed(name, cfg.state_dir).pid(), f":{port}" if port else "-"))
    return rows, snapshot


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
