"""The venue's configuration, each setting declared once with its `VENUE_*` variable (`services.envvars`), and
the composition of the two venues.

`VENUE_ENV_VARS` is derived from the declarations. A malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.envvars import (
    ConfigError,
    drawn,
    integer,
    millis,
    millis_range,
    number,
    parse_int,
    parsed,
    read,
    table,
    text,
)

from .clock import Clock
from .ledger import Ledger
from .pool import METEORA, RAYDIUM, PoolSpec
from .registry import ClientOrderIds
from .simulator import SimulatedVenue

VENUE_SPECS: dict[str, PoolSpec] = {"raydium": RAYDIUM, "meteora": METEORA}
MIN_SECRET_CHARS = 16
_DAY_MS = 86_400_000  # the bound of every duration: a drill may hold a swap for minutes, none for a day


def _random_seed() -> int:
    return random.SystemRandom().randrange(1 << 32)


def _seed(raw: str) -> int:
    return parse_int("VENUE_SEED", raw, 0, (1 << 64) - 1)


def _path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _secret(raw: str) -> str:
    """A bearer token: visible ASCII, long enough not to be guessed. The error never shows the value."""
    if raw and (len(raw) < MIN_SECRET_CHARS or not all("!" <= c <= "~" for c in raw)):
        raise ConfigError(
            f"VENUE_SECRET must be at least {MIN_SECRET_CHARS} visible ASCII characters without spaces "
            f"(it has {len(raw)} characters); e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return raw


@dataclass(frozen=True, slots=True)
class VenueConfig:
    seed: int = drawn(
        "VENUE_SEED", "integer seed of prices, latencies and faults; unset: random (logged at start)", _seed,
        _random_seed,
    )  # fmt: skip
    quote_latency_s: tuple[float, float] = millis_range(
        "VENUE_QUOTE_LATENCY_MS", (0.0, 0.0), "latency of a quote or submit call, 'a' or a uniform range 'a-b'",
        _DAY_MS,
    )  # fmt: skip
    execution_latency_s: tuple[float, float] = millis_range(
        "VENUE_EXEC_LATENCY_MS", (2.0, 3.0), "time from an accepted submit to its settlement, 'a' or 'a-b'",
        _DAY_MS,
    )  # fmt: skip
    failure_rate: float = number(
        "VENUE_FAILURE_RATE", 0.0, "probability 0..1 that a quote or submit is not served (retryable)", 0, 1
    )
    execution_failure_rate: float = number(
        "VENUE_EXEC_FAILURE_RATE", 0.0, "probability 0..1 that an accepted swap settles failed (venue error)",
        0, 1,
    )  # fmt: skip
    drop_reply_rate: float = number(
        "VENUE_DROP_REPLY_RATE", 0.0, "probability 0..1 that a submit is accepted but its reply is lost", 0, 1
    )
    status_delay_s: float = millis(
        "VENUE_STATUS_DELAY_MS", 0.0, "how long an accepted swap still reads 'unknown' on status", 0, _DAY_MS,
        whole=False,
    )  # fmt: skip
    adverse_move_bps: float = number(
        "VENUE_ADVERSE_MOVE_BPS", 0.0, "price move against every swap between quote and execution (slippage drills)",
        0, 10_000,
    )  # fmt: skip
    ledger_path: Path | None = parsed(
        "VENUE_LEDGER_PATH",
        None,
        "",
        "append-only ledger journal replayed at start; unset: in memory only",
        _path,
    )
    host: str = text(
        "VENUE_HOST", "127.0.0.1", "bind address of the venue server (python -m services.venue.server)"
    )
    port: int = integer("VENUE_PORT", 3100, "port of the venue server", 1, 65535)
    url: str = parsed(
        "VENUE_URL", "", "", "where routers reach the venue server; unset: venues run inside the router",
        lambda raw: raw.rstrip("/"),
    )  # fmt: skip
    timeout_s: float = millis(
        "VENUE_TIMEOUT_MS", 2.0, "HTTP venue client timeout per call", 0, _DAY_MS, whole=False
    )
    tick_s: float = millis(
        "VENUE_TICK_MS", 1.0, "every pool takes a step of its random walk this often (0: only when read)",
        0, _DAY_MS, whole=False,
    )  # fmt: skip
    market_window_s: float = millis(
        "VENUE_MARKET_DATA_MS", 0.1, "market data: each pool's latest state is published at most once per this "
        "window (0: none)", 0, _DAY_MS, whole=False,
    )  # fmt: skip
    secret: str = parsed(
        "VENUE_SECRET", "", "", "shared secret: the venue server requires 'Authorization: Bearer <it>', routers "
        "send it; unset: no authentication, allowed only on a loopback VENUE_HOST", _secret, hidden=True,
    )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VenueConfig:
        env = os.environ if env is None else env
        # Values are trimmed, and one of only spaces is unset, as this module always read them (`VENUE_HOST= `
        # binds 127.0.0.1, not every interface).
        return read(cls, {name: value.strip() for name, value in env.items() if name.startswith("VENUE_")})

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


VENUE_ENV_VARS = table(VenueConfig)
