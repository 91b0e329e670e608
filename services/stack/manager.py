"""`oee up` / `down` / `status`: the local stack (broker, database, topics, schema) and the services on it.

A part given from outside (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL) is used, never started or stopped here.
Everything started here is recorded by pid under the state directory; `down` stops exactly those pids.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import sys
from dataclasses import dataclass

from services.config import Settings
from services.stack import kafka, postgres
from services.stack.procs import Managed, StackError, port_open, wait_for


@dataclass(frozen=True)
class Service:
    """A long-running service of ours that `up` starts in the background (`oee <name>`)."""

    name: str
    http_port_env: str | None = None  # the env var holding its HTTP port, when it serves /health


# The services that exist, in start order (dependencies first).
SERVICES: tuple[Service, ...] = (
    Service("venue", "VENUE_PORT"),
    Service("router"),
    Service("triggers"),
    Service("projector"),
    Service("api", "PORT"),
)


def _service_port(settings: Settings, service: Service) -> int | None:
    if service.http_port_env is None:
        return None
    if service.http_port_env == "PORT":
        return settings.port
    from services.venue.config import VENUE_ENV_VARS

    default = VENUE_ENV_VARS.get(service.http_port_env, ("0", ""))[0]
    return int(os.environ.get(service.http_port_env) or default) or None


def service_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["DATABASE_URL"] = settings.database_url
    # The router reaches the venue server `up` starts, so the venue outlives a router crash (its ledger is
    # what proves a swap ran at most once).
    if not env.get("VENUE_URL"):
        from services.venue.config import VenueConfig

        venue = VenueConfig.from_env(env)
        env["VENUE_URL"] = f"http://{venue.host}:{venue.port}"
    # The simulated chain keeps its ledger across restarts, as a real one would.
    env.setdefault("VENUE_LEDGER_PATH", str(settings.stack.state_dir / "venue" / "ledger.jsonl"))
    return env


def stack_up(settings: Settings, echo: bool = True) -> None:
    cfg = settings.stack
    say = print if echo else (lambda *a, **k: None)
    if cfg.external_kafka:
        say(f"broker    external  {cfg.external_kafka}")
    else:
        pid = kafka.start(cfg)
        say(f"broker    pid {pid:<6} {cfg.bootstrap_servers}  (Apache Kafka {cfg.kafka_version}, KRaft)")
    if cfg.external_database:
        say("database  external  DATABASE_URL")
    else:
        pid = postgres.start(cfg)
        say(f"database  pid {pid:<6} {cfg.database_url}")
    asyncio.run(_prepare(settings, say))


async def _prepare(settings: Settings, say) -> None:  # type: ignore[no-untyped-def]
    from projections.migrations import migrate, migrate_state
    from services.stack.topics import create_topics

    report = await create_topics(settings.bootstrap_servers, settings.topic_prefix, settings.partitions)
    say(f"topics    {len(report.created)} created, {len(report.existing)} already there")
    for warning in report.warnings:
        say(f"warning   {warning}")
    applied = await migrate(settings.database_url) + await migrate_state(settings.database_url)
    say(f"schema    {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))


def services_up(settings: Settings, names: list[str] | None = None, echo: bool = True) -> None:
    env = service_env(settings)
    for service in SERVICES:
        if names is not None and service.name not in names:
            continue
        proc = Managed(service.name, settings.stack.state_dir)
        pid = proc.pid()
        port = _service_port(settings, service)
        if pid is None:
            if port is not None and port_open(port):
                raise StackError(
                    f"port {port} for {service.name} is already in use by another process; "
                    f"stop it or set {service.http_port_env}"
                )
            pid = proc.start([sys.executable, "-m", "services.cli", service.name], env=env)
        if port is not None and not wait_for(
            functools.partial(port_open, port), settings.stack.start_timeout
        ):
            raise StackError(f"{service.name} (pid {pid}) did not listen on port {port}; see {proc.log_file}")
        if proc.pid() is None:
            raise StackError(
                f"{service.name} exited during start; see {proc.log_file}: {proc.log_tail(1)[:200]}"
            )
        where = f"http://{settings.host}:{port}" if port else ""
        if echo:
            print(f"{service.name:<9} pid {pid:<6} {where}  log {proc.log_file}")


def down(settings: Settings, purge: bool = False, echo: bool = True) -> None:
    cfg = settings.stack
    stopped = []
    for service in reversed(SERVICES):
        if Managed(service.name, cfg.state_dir).stop(signal.SIGTERM, timeout=20.0):
            stopped.append(service.name)
    if postgres.stop(cfg):
        stopped.append("postgres")
    if kafka.stop(cfg):
        stopped.append("kafka")
    if purge:
        kafka.purge(cfg)
        postgres.purge(cfg)
        for leftover in ("logs", "venue", "faust"):
            shutil.rmtree(cfg.state_dir / leftover, ignore_errors=True)
    if echo:
        print(("stopped " + ", ".join(stopped)) if stopped else "nothing of this stack was running")
        if purge:
            print(f"purged the data under {cfg.state_dir}")


def status(settings: Settings) -> list[tuple[str, str, str]]:
    """(component, state, where) rows for everything `up` manages."""
    cfg = settings.stack
    rows: list[tuple[str, str, str]] = []
    if cfg.external_kafka:
        rows.append(("kafka", "external", cfg.external_kafka))
    else:
        pid = kafka.managed(cfg).pid()
        rows.append(("kafka", f"running pid {pid}" if pid else "stopped", cfg.bootstrap_servers))
    if cfg.external_database:
        rows.append(("postgres", "external", "DATABASE_URL"))
    else:
        pid = postgres.managed(cfg).pid()
        rows.append(("postgres", f"running pid {pid}" if pid else "stopped", cfg.database_url))
    for service in SERVICES:
        pid = Managed(service.name, cfg.state_dir).pid()
        port = _service_port(settings, service)
        rows.append((service.name, f"running pid {pid}" if pid else "stopped", f":{port}" if port else "-"))
    return rows


def restart_broker(settings: Settings) -> int:
    kafka.stop(settings.stack)
    return kafka.start(settings.stack)
