"""The services `oee up` runs, in start order, and the environment each instance runs with.

One instance of each by default. `OEE_ROUTERS`, `OEE_APIS`, `OEE_PROJECTORS` and `OEE_GATEWAYS` ask for more
(scale-out on one machine, docs/decisions/0023): instance 1 keeps the plain name and the configured ports,
instance n is `<name>-n` and takes the next port (`PORT + n-1`, `GATEWAY_PORT + n-1`; metrics ports step by
10 so that a second router's does not land on the projector's). Routers and projectors share the work
through their consumer groups, APIs and gateways are independent HTTP servers on their own ports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.config import Settings
from services.envvars import env_int
from services.stack import venue_secret
from services.static_membership import lineup_instance_id

MAX_INSTANCES = 16  # per kind: a bound on what one local supervisor runs (2 cores: more is only overhead)
METRICS_PORT_STEP = (
    10  # router n: ROUTER_METRICS_PORT + 10(n-1); 9308/9309/9310 are router/projector/supervisor
)

LINEUP_ENV_VARS: dict[str, tuple[str, str]] = {
    "OEE_ROUTERS": ("1", "router processes `up` runs (1-16; more than the intake's partitions idle)"),
    "OEE_APIS": ("1", "API processes `up` runs (1-16): API n listens on PORT + n-1"),
    "OEE_PROJECTORS": ("1", "projector processes `up` runs (1-16), one consumer group"),
    "OEE_GATEWAYS": ("0", "standalone `oee gateway` processes `up` runs (0-16): n on GATEWAY_PORT + n-1"),
}


@dataclass(frozen=True)
class Service:
    """A long-running service of ours that `up` keeps running (`oee <command>`)."""

    name: str  # the instance: `router`, `router-2`, ...
    http_port_env: str | None = None  # the env var holding its HTTP port, when it serves /health
    venue_secret: bool = False  # whether it is given VENUE_SECRET (only the venue and its one client)
    command: str = ""  # the `oee` subcommand; the name when empty
    overrides: tuple[tuple[str, str], ...] = ()  # this instance's own values (ports)

    @property
    def kind(self) -> str:
        return self.command or self.name


# The kinds of service, in start order (dependencies first); `down` stops them in reverse.
SERVICES: tuple[Service, ...] = (
    Service("venue", "VENUE_PORT", venue_secret=True),
    Service("router", venue_secret=True),
    Service("triggers"),  # limit and sniper orders' trigger engine (market data -> trigger requests)
    Service("projector"),
    Service("api", "PORT"),
    Service("gateway", "GATEWAY_PORT"),
)
_COUNT_VAR = {
    "router": "OEE_ROUTERS",
    "api": "OEE_APIS",
    "projector": "OEE_PROJECTORS",
    "gateway": "OEE_GATEWAYS",
}
# What instance n > 1 of a kind moves, and by how much per instance.
_STEPPED = {
    "router": (("ROUTER_METRICS_PORT", METRICS_PORT_STEP),),
    "projector": (("PROJECTOR_METRICS_PORT", METRICS_PORT_STEP),),
    "api": (("PORT", 1),),
    "gateway": (("GATEWAY_PORT", 1),),
}
_INSTANCE = re.compile(r"^(?P<kind>[a-z]+)(?:-(?P<n>\d+))?$")
_KINDS = tuple(s.name for s in SERVICES)


def counts(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """How many instances of each kind `up` runs (ConfigError naming the variable when out of bounds)."""
    env = os.environ if env is None else env
    out = {}
    for service in SERVICES:
        var = _COUNT_VAR.get(service.name)
        low = 0 if service.name == "gateway" else 1
        out[service.name] = env_int(env, var, low, MAX_INSTANCES, LINEUP_ENV_VARS) if var else 1
    return out


def instance_name(kind: str, n: int) -> str:
    return kind if n == 1 else f"{kind}-{n}"


def lineup(env: Mapping[str, str] | None = None) -> tuple[Service, ...]:
    """Every service instance `up` runs for this environment, in start order."""
    env = os.environ if env is None else env
    wanted = counts(env)
    out = []
    for base in SERVICES:
        for n in range(1, wanted[base.name] + 1):
            overrides = tuple(
                (var, str(_base_value(env, var) + step * (n - 1)))
                for var, step in _STEPPED.get(base.name, ())
                if n > 1 and _base_value(env, var) != 0  # a port of 0 (off) stays off
            )
            out.append(
                Service(
                    instance_name(base.name, n), base.http_port_env, base.venue_secret, base.name, overrides
                )
            )
    return tuple(out)


def is_service_instance(name: str) -> bool:
    """`router`, `router-2`, `api-3`... (not `kafka-2`, `postgres` or `supervisor`)."""
    m = _INSTANCE.match(name)
    if m is None or m["kind"] not in _KINDS:
        return False
    return m["n"] is None or 2 <= int(m["n"]) <= MAX_INSTANCES


def instances_on_disk(state_dir: Path) -> list[str]:
    """The service instances with a pid file under `state_dir` (whatever lineup recorded them), in start
    order: `down` and a new supervisor find what an earlier one, perhaps with other counts, left."""
    found = [p.stem for p in (state_dir / "run").glob("*.pid") if is_service_instance(p.stem)]
    kinds = list(_KINDS)
    return sorted(found, key=lambda name: (kinds.index(_kind_of(name)), _number_of(name)))


def _kind_of(name: str) -> str:
    m = _INSTANCE.match(name)
    return m["kind"] if m else name


def _number_of(name: str) -> int:
    m = _INSTANCE.match(name)
    return int(m["n"]) if m and m["n"] else 1


def _base_value(env: Mapping[str, str], var: str) -> int:
    from services.config import ENV_VARS
    from services.gateway.options import GATEWAY_ENV_VARS
    from services.metrics import METRICS_ENV_VARS

    table = {**ENV_VARS, **GATEWAY_ENV_VARS, **METRICS_ENV_VARS}
    raw = env.get(var) or table[var][0]
    return int(raw) if raw.isdigit() else 0


def _venue_var(env: Mapping[str, str], name: str) -> str:
    from services.venue.config import VENUE_ENV_VARS

    return env.get(name) or VENUE_ENV_VARS[name][0]


def _gateway_var(env: Mapping[str, str], name: str) -> str:
    from services.gateway.options import GATEWAY_ENV_VARS

    return env.get(name) or GATEWAY_ENV_VARS[name][0]


def service_port(settings: Settings, service: Service, env: Mapping[str, str] | None = None) -> int | None:
    """Where the service answers HTTP, read as plainly as possible: the supervisor must not fail on a
    service's malformed settings (that service's own start reports them, and the supervisor shows the loop)."""
    if service.http_port_env is None:
        return None
    own = dict(service.overrides).get(service.http_port_env)
    if own is not None:
        return int(own)
    if service.http_port_env == "PORT":
        return settings.port
    source = os.environ if env is None else env
    reader = _gateway_var if service.kind == "gateway" else _venue_var
    raw = reader(source, service.http_port_env)
    return int(raw) if raw.isdigit() else None


def service_host(settings: Settings, service: Service, env: Mapping[str, str] | None = None) -> str:
    """Where to reach the service from this machine: its bind address, loopback for a wildcard one."""
    source = os.environ if env is None else env
    if service.http_port_env == "PORT":
        host = settings.host
    elif service.kind == "gateway":
        host = _gateway_var(source, "GATEWAY_HOST")
    elif service.http_port_env is not None:
        host = _venue_var(source, "VENUE_HOST")
    else:
        return "127.0.0.1"
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


# The kinds whose instances `up` runs with static group membership, and the variable each reads it from.
INSTANCE_ID_VARS = {
    "router": "ROUTER_INSTANCE_ID",
    "projector": "PROJECTOR_INSTANCE_ID",
    "triggers": "TRIGGERS_INSTANCE_ID",  # by hand its default is the host name: two stacks on a host would clash
}


def env_for(service: Service, env: Mapping[str, str], state_dir: Path | None = None) -> dict[str, str]:
    """`env` as `service` gets it: its own ports, the venue secret only where it is needed, and (given the
    stack's `state_dir`) its own static group instance id: a supervised restart takes its partitions back at
    once (decision 0029). The id always comes from here, never from the operator's environment, which would
    give every instance of a kind the same one."""
    out = dict(env) if service.venue_secret else {k: v for k, v in env.items() if k != venue_secret.ENV_VAR}
    out.update(service.overrides)
    var = INSTANCE_ID_VARS.get(service.kind)
    if var is not None and state_dir is not None:
        out[var] = lineup_instance_id(service.name, state_dir)
    return out


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
