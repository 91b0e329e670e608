"""The services `oee up` runs, in start order, and the environment they run with."""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.config import Settings
from services.stack import venue_secret


@dataclass(frozen=True)
class Service:
    """A long-running service of ours that `up` keeps running (`oee <name>`)."""

    name: str
    http_port_env: str | None = None  # the env var holding its HTTP port, when it serves /health


# The services that exist, in start order (dependencies first); `down` stops them in reverse.
SERVICES: tuple[Service, ...] = (
    Service("venue", "VENUE_PORT"),
    Service("router"),
    Service("projector"),
    Service("api", "PORT"),
)


def service_port(settings: Settings, service: Service) -> int | None:
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
    env["PYTHONUNBUFFERED"] = "1"  # their output goes through a pipe: line by line, not in 8 KiB blocks
    # The router reaches the venue server `up` starts, so the venue outlives a router crash (its ledger is
    # what proves a swap ran at most once).
    if not env.get("VENUE_URL"):
        from services.venue.config import VenueConfig

        venue = VenueConfig.from_env(env)
        env["VENUE_URL"] = f"http://{venue.host}:{venue.port}"
    # The simulated chain keeps its ledger across restarts, as a real one would.
    env.setdefault("VENUE_LEDGER_PATH", str(settings.stack.state_dir / "venue" / "ledger.jsonl"))
    # The venue and the router share a secret; one the operator did not give is made once and kept.
    if not env.get(venue_secret.ENV_VAR):
        env[venue_secret.ENV_VAR] = venue_secret.ensure(settings.stack.state_dir)
    return env
