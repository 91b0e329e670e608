"""The venue's configuration, read from `VENUE_*` variables, and the composition of the two venues.

`VENUE_ENV_VARS` documents every variable with its default in the same shape as `services.config.ENV_VARS`
so the project-wide list can include it. A malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.envvars import ConfigError

from .clock import Clock
from .ledger import Ledger
from .pool import METEORA, RAYDIUM, PoolSpec
from .registry import ClientOrderIds
from .simulator import SimulatedVenue

VENUE_SPECS: dict[str, PoolSpec] = {"raydium": RAYDIUM, "meteora": METEORA}

VENUE_ENV_VARS: dict[str, tuple[str, str]] = {
    "VENUE_SEED": ("", "integer seed of prices, latencies and faults; unset: random (logged at start)"),
    "VENUE_QUOTE_LATENCY_MS": ("0", "latency of a quote or submit call, 'a' or a uniform range 'a-b'"),
    "VENUE_EXEC_LATENCY_MS": ("2000-3000", "time from an accepted submit to its settlement, 'a' or 'a-b'"),
    "VENUE_FAILURE_RATE": ("0", "probability 0..1 that a quote or submit is not served (retryable)"),
    "VENUE_EXEC_FAILURE_RATE": ("0", "probability 0..1 that an accepted swap settles failed (venue error)"),
    "VENUE_DROP_REPLY_RATE": ("0", "probability 0..1 that a submit is accepted but its reply is lost"),
    "VENUE_STATUS_DELAY_MS": ("0", "how long an accepted swap still reads 'unknown' on status"),
    "VENUE_ADVERSE_MOVE_BPS": (
        "0",
        "price move against every swap between quote and execution (slippage drills)",
    ),
    "VENUE_LEDGER_PATH": ("", "append-only ledger journal replayed at start; unset: in memory only"),
    "VENUE_HOST": ("127.0.0.1", "bind address of the venue server (python -m services.venue.server)"),
    "VENUE_PORT": ("3100", "port of the venue server"),
    "VENUE_URL": ("", "where routers reach the venue server; unset: venues run inside the router"),
    "VENUE_TIMEOUT_MS": ("2000", "HTTP venue client timeout per call"),
    "VENUE_TICK_MS": ("1000", "every pool takes a step of its random walk this often (0: only when read)"),
    "VENUE_MARKET_DATA_MS": (
        "100",
        "market data: each pool's latest state is published at most once per this window (0: none)",
    ),
    "VENUE_SECRET": (
        "",
        "shared secret: the venue server requires 'Authorization: Bearer <it>', routers send it; "
        "unset: no authentication, allowed only on a loopback VENUE_HOST",
    ),
}
MIN_SECRET_CHARS = 16


@dataclass(frozen=True, slots=True)
class VenueConfig:
    seed: int
    quote_latency_s: tuple[float, float]
    execution_latency_s: tuple[float, float]
    failure_rate: float
    execution_failure_rate: float
    drop_reply_rate: float
    status_delay_s: float
    adverse_move_bps: float
    ledger_path: Path | None
    host: str
    port: int
    url: str
    timeout_s: float
    secret: str = field(default="", repr=False)  # never in a log line
    tick_s: float = 1.0
    market_window_s: float = 0.1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VenueConfig:
        env = os.environ if env is None else env
        raw_seed = _get(env, "VENUE_SEED")
        ledger = _get(env, "VENUE_LEDGER_PATH")
        return cls(
            seed=_parse_int(raw_seed, "VENUE_SEED") if raw_seed else random.SystemRandom().randrange(1 << 32),
            quote_latency_s=_range_ms(env, "VENUE_QUOTE_LATENCY_MS"),
            execution_latency_s=_range_ms(env, "VENUE_EXEC_LATENCY_MS"),
            failure_rate=_rate(env, "VENUE_FAILURE_RATE"),
            execution_failure_rate=_rate(env, "VENUE_EXEC_FAILURE_RATE"),
            drop_reply_rate=_rate(env, "VENUE_DROP_REPLY_RATE"),
            status_delay_s=_range_ms(env, "VENUE_STATUS_DELAY_MS", single=True)[0],
            adverse_move_bps=_bps(env, "VENUE_ADVERSE_MOVE_BPS"),
            ledger_path=Path(ledger) if ledger else None,
            host=_get(env, "VENUE_HOST"),
            port=_port(env, "VENUE_PORT"),
            url=_get(env, "VENUE_URL").rstrip("/"),
            timeout_s=_range_ms(env, "VENUE_TIMEOUT_MS", single=True)[0],
            secret=_secret(env, "VENUE_SECRET"),
            tick_s=_range_ms(env, "VENUE_TICK_MS", single=True)[0],
            market_window_s=_range_ms(env, "VENUE_MARKET_DATA_MS", single=True)[0],
        )

    def check_exposure(self) -> None:
        """Refuse to serve without a secret on an address other machines can reach (one-line error)."""
        if not self.secret and not is_loopback(self.host):
            raise ConfigError(
                f"VENUE_HOST={self.host} is not a loopback address and VENUE_SECRET is unset: "
                "anyone reaching the port could submit swaps; set VENUE_SECRET (the routers send it too)"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def build_venues(
    config: VenueConfig, tokens: Iterable[str], *, clock: Clock | None = None
) -> dict[str, SimulatedVenue]:
    """Raydium and Meteora over the same tokens and seed (each venue derives its own streams from it).

    With a ledger path, each venue journals to `<path stem>-<venue><suffix>` beside it. The venues share
    one client-order-id registry (two programs of one chain: an id lands one swap on either, not both),
    rebuilt from their journals."""
    tokens = tuple(tokens)
    order_ids = ClientOrderIds()
    venues: dict[str, SimulatedVenue] = {}
    for name, spec in VENUE_SPECS.items():
        path = config.ledger_path
        ledger = Ledger(path.with_name(f"{path.stem}-{name}{path.suffix or '.jsonl'}")) if path else None
        venues[name] = SimulatedVenue(
            name,
            spec,
            tokens,
            seed=config.seed,
            quote_latency_s=config.quote_latency_s,
            execution_latency_s=config.execution_latency_s,
            failure_rate=config.failure_rate,
            execution_failure_rate=config.execution_failure_rate,
            drop_reply_rate=config.drop_reply_rate,
            status_delay_s=config.status_delay_s,
            adverse_move_bps=config.adverse_move_bps,
            clock=clock,
            ledger=ledger,
            order_ids=order_ids,
        )
    return venues


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    return value if value != "" else VENUE_ENV_VARS[name][0]


def _parse_int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _port(env: Mapping[str, str], name: str) -> int:
    value = _parse_int(_get(env, name), name)
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}={value} is outside 1..65535")
    return value


def _rate(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r} must be a probability within 0..1")
    return value


def _range_ms(env: Mapping[str, str], name: str, *, single: bool = False) -> tuple[float, float]:
    """'250' -> (0.25, 0.25); '2000-3000' -> (2.0, 3.0) seconds."""
    raw = _get(env, name)
    parts = raw.split("-")
    try:
        if len(parts) > (1 if single else 2):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        shape = "milliseconds" if single else "milliseconds 'a' or a range 'a-b'"
        raise ConfigError(f"{name}={raw!r} must be {shape}") from None
    low, high = values[0], values[-1]
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ConfigError(f"{name}={raw!r} must be non-negative with low <= high")
    return low / 1000, high / 1000


def _bps(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of basis points") from None
    if not (math.isfinite(value) and 0 <= value <= 10_000):
        raise ConfigError(f"{name}={raw!r} must be within 0..10000")
    return value


def _secret(env: Mapping[str, str], name: str) -> str:
    """A bearer token: visible ASCII, long enough not to be guessed. The error never shows the value."""
    value = _get(env, name)
    if value and (len(value) < MIN_SECRET_CHARS or not all("!" <= c <= "~" for c in value)):
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_CHARS} visible ASCII characters without spaces "
            f"(it has {len(value)} characters); e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value
