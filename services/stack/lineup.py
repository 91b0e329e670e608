"""The services `oee up` runs, in start order, and the environment they run with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.config import Settings
from services.stack import venue_secret


@dataclass(frozen=True)
class Service:
    """A long-running service of ours that `up` keeps running (`oee <name>`)."""

    name: str
    http_port_env: str | None = None  # the env var holding its HTTP port, when it serves /health
    venue_secret: bool = False  # whether it is given VENUE_SECRET (only the venue and its one client)


# The services that exist, in start order (dependencies first); `down` stops them in reverse.
SERVICES: tuple[Service, ...] = (
    Service("venue", "VENUE_PORT", venue_secret=True),
    Service("router", venue_secret=True),
    Service("triggers"),  # limit and sniper orders' trigger engine (market data -> trigger requests)
    Service("projector"),
    Service("api", "PORT"),
)


def _venue_var(env: Mapping[str, str], name: str) -> str:
    from services.venue.config import VENUE_ENV_VARS

    return env.get(name) or VENUE_ENV_VARS[name][0]


def service_port(settings: Settings, service: Service, env: Mapping[str, str] | None = None) -> int | None:
    """Where the service answers HTTP, read as plainly as possible: the supervisor must not fail on a
    service's malformed settings (that service's own start reports them, and the supervisor shows the loop)."""
    if service.http_port_env is None:
        return None
    if service.http_port_env == "PORT":
        return settings.port
    raw = _venue_var(os.environ if env is None else env, service.http_port_env)
    return int(raw) if raw.isdigit() else None


def service_host(settings: Settings, service: Service, env: Mapping[str, str] | None = None) -> str:
    """Where to reach the service from this machine: its bind address, loopback for a wildcard one."""
    if service.http_port_env == "PORT":
        host = settings.host
    elif service.http_port_env is not None:
        host = _venue_var(os.environ if env is None else env, "VENUE_HOST")
    else:
        return "127.0.0.1"
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def env_for(service: Service, env: Mapping[str, str]) -> dict[str, str]:
    """`env` as `service` gets it: the venue secret only where it is needed."""
    if service.venue_secret:
        return dict(env)
    return {k: v for k, v in env.items() if k != venue_secret.ENV_VAR}


def service_env(settings: Settings) -> dict[str, str]:
    """What every service runs with (`env_for` then narrows it per service)."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["DATABASE_URL"] = settings.database_url
    env["PYTHONUNBUFFERED"] = "1"  # their output goes through a pipe: line by line, not in 8 KiB blocks
    # The router reaches the venue server `up` starts, so the venue outlives a router crash (its ledger is
    # what proves a swap ran at most once).
    if not env.get("VENUE_URL"):
        env["VENUE_URL"] = f"http://{_venue_var(env, 'VENUE_HOST')}:{_venue_var(env, 'VENUE_PORT')}"
    # The simulated chain keeps its ledger across restarts, as a real one would.
    env.setdefault("VENUE_LEDGER_PATH", str(settings.stack.state_dir / "venue" / "ledger.jsonl"))
    # The venue and the router share a secret; one the operator did not give is made once and kept.
    if not env.get(venue_secret.ENV_VAR):
        env[venue_secret.ENV_VAR] = venue_secret.ensure(settings.stack.state_dir)
    return env
