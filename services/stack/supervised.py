"""`oee supervise`: what `oee up` runs in the background to keep the system running.

It supervises every service instance (`lineup.lineup()`) as its child, and watches the broker node(s) and the
database when this stack runs them (not when KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point elsewhere). One
supervisor per state directory: it holds an exclusive lock for its lifetime (the kernel drops it if the
supervisor is killed). Services left running by a supervisor that was killed are replaced, not adopted:
their output pipe died with it, so their logs would go nowhere and their exits would go unseen.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.handlers
import os
import signal
import sys

from services import logs
from services.config import Settings
from services.stack import kafka, postgres, settings_record
from services.stack.lineup import (
    Service,
    env_for,
    instances_on_disk,
    lineup,
    service_env,
    service_host,
    service_port,
)
from services.stack.liveness import Probe, probe_for
from services.stack.procs import Managed, file_lock, stop_all
from services.stack.supervisor import (
    SUPERVISOR,
    InfraSpec,
    ServiceSpec,
    Supervisor,
    snapshot_path,
)
from services.stack.supervisor_options import SupervisorOptions

log = logging.getLogger("oee.supervisor")


# Where a service without an HTTP server of its own serves /metrics: its liveness probe.
METRICS_PORT_VARS = {
    "router": "ROUTER_METRICS_PORT",
    "projector": "PROJECTOR_METRICS_PORT",
    "triggers": "TRIGGERS_METRICS_PORT",
}


def service_specs(settings: Settings) -> list[ServiceSpec]:
    env = service_env(settings)
    specs = []
    for s in lineup():
        own_env = env_for(s, env, settings.stack.state_dir)
        port, host = service_port(settings, s, env), service_host(settings, s, env)
        specs.append(
            ServiceSpec(
                s.name,
                (sys.executable, "-m", "services.cli", s.kind),
                own_env,
                port,
                host,
                liveness_probe(settings, s, own_env, port, host),
            )
        )
    return specs


def liveness_probe(
    settings: Settings, service: Service, env: dict[str, str], http_port: int | None, http_host: str
) -> Probe | None:
    """`/health` on its HTTP port, else `/metrics` on its metrics port (which it binds on HOST); None when it
    has neither. Read as plainly as the ports above: a malformed value is the service's own error to report."""
    if http_port:
        return probe_for(http_port, http_host, None)
    from services.metrics import METRICS_ENV_VARS

    var = METRICS_PORT_VARS.get(service.kind)
    raw = (env.get(var, "") or METRICS_ENV_VARS[var][0]) if var else ""
    metrics_port = int(raw) if raw.isdigit() and int(raw) <= 65535 else None
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    return probe_for(None, host, metrics_port)


def infra_specs(settings: Settings) -> list[InfraSpec]:
    cfg = settings.stack
    specs = []
    if not cfg.external_kafka:
        for node in cfg.kafka_nodes:
            proc = kafka.managed(cfg, node)
            start = functools.partial(kafka.start_node, cfg, node.node_id)
            log = proc.log_file.with_name(f"{node.name}-server.log")  # log4j's file, not the JVM's stdout
            specs.append(InfraSpec(node.name, "broker", proc.pid, proc.stopped_on_purpose, start, log))
    if not cfg.external_database:
        proc = postgres.managed(cfg)
        start = functools.partial(postgres.start, cfg)
        specs.append(InfraSpec("postgres", "database", proc.pid, proc.stopped_on_purpose, start))
    return specs


def replace_orphans(settings: Settings, timeout: float) -> list[str]:
    """Stop services a killed supervisor left behind (by their pid files, which carry each process's start
    time, so a pid reused by someone else is never touched); the names that were running."""
    orphans = []
    for name in instances_on_disk(settings.stack.state_dir):  # whatever counts the dead one ran
        proc = Managed(name, settings.stack.state_dir)
        pid = proc.pid()
        if pid is not None:
            log.warning("replacing %s (pid %d), left running by a supervisor that died", name, pid)
            orphans.append(proc)
    return stop_all(orphans, signal.SIGTERM, timeout)


def _log_to_file(settings: Settings) -> None:
    """The supervisor's own lines (starts, exits, crash loops) go to logs/supervisor.log, rotated like the
    services' logs; a person running it in a terminal sees them there too."""
    cfg = settings.stack
    path = cfg.state_dir / "logs" / f"{SUPERVISOR}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logs.setup(settings.log_level, settings.log_format, "oee.supervisor")
    root = logging.getLogger()
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=cfg.log_max_bytes, backupCount=cfg.log_backups
    )
    handler.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = [handler, *(root.handlers if sys.stderr.isatty() else [])]


def main(settings: Settings) -> int:
    """Run the supervisor in the foreground until SIGTERM/SIGINT; 3 when another one runs already."""
    options = SupervisorOptions.from_env()
    me = Managed(SUPERVISOR, settings.stack.state_dir)
    with file_lock(me.pid_file.with_suffix(".lock"), blocking=False) as mine:
        if not mine:
            print(f"oee supervise: a supervisor already runs for {settings.stack.state_dir}", file=sys.stderr)
            return 3
        me.record(os.getpid())
        settings_record.record(settings.stack.state_dir, os.environ)  # what a later `oee up` compares with
        _log_to_file(settings)
        replace_orphans(settings, options.stop_timeout_s)
        supervisor = Supervisor(
            services=service_specs(settings),
            infra=infra_specs(settings),
            policy=options.policy,
            state_dir=settings.stack.state_dir,
            log_max_bytes=settings.stack.log_max_bytes,
            log_backups=settings.stack.log_backups,
            stop_timeout_s=options.stop_timeout_s,
            snapshot_file=snapshot_path(settings.stack.state_dir),
            liveness=options.liveness,
        )
        supervisor.metrics_url = _serve_metrics(settings, options, supervisor)
        log.info(
            "supervising %s; watching %s",
            ", ".join(s.name for s in supervisor.services),
            ", ".join(i.name for i in supervisor.infra) or "nothing else (external broker and database)",
        )
        asyncio.run(_run(supervisor))
        log.info("stopped")
        me.pid_file.unlink(missing_ok=True)
    return 0


async def _run(supervisor: Supervisor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # a closed terminal is no reason to stop
    await supervisor.run(stop)


def _serve_metrics(settings: Settings, options: SupervisorOptions, supervisor: Supervisor) -> str | None:
    from prometheus_client import REGISTRY

    from services import metrics
    from services.metrics.supervisor import SupervisorCollector

    # Read from the metrics server's thread: `snapshot` is replaced whole on each change, never mutated.
    REGISTRY.register(SupervisorCollector(lambda: supervisor.snapshot))
    if metrics.serve(options.metrics_port, settings.host, "supervisor metrics"):
        return f"http://{settings.host}:{options.metrics_port}/metrics"
    return None
