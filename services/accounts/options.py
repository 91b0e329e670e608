"""How the API authenticates and limits accounts, read from the environment (`AUTH`, `AUTH_*`, `ACCOUNT_*`,
`WS_ALLOWED_ORIGINS`). `ACCOUNTS_ENV_VARS` documents each with its default, like every component's table.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from services.envvars import ConfigError, env_int, env_str

ACCOUNTS_ENV_VARS: dict[str, tuple[str, str]] = {
    "AUTH": (
        "off",
        "keys: every route but /health, /ready and the page shells needs an API key; "
        "off: one implicit `local` account, allowed only on a loopback HOST",
    ),
    "AUTH_CACHE_TTL_MS": (
        "3000",
        "how long a verified key is trusted before PostgreSQL is asked again (NOTIFY clears it sooner)",
    ),
    "AUTH_CACHE_MAX_KEYS": ("10000", "key ids (known or not) one API process remembers"),
    "WS_ALLOWED_ORIGINS": (
        "",
        "browser origins that may open WebSockets besides the API's own (comma-separated; * for any)",
    ),
    # Defaults well above what one healthy client needs (the whole pipeline finishes ~300 orders/s here): the
    # limits stop a runaway or hostile client from filling the log and the router, they do not shape traffic.
    "ACCOUNT_ORDER_RATE": ("500", "orders per second one account may place per API process; 0: no limit"),
    "ACCOUNT_ORDER_BURST": ("1000", "orders one account may place at once (the token bucket's size)"),
    "ACCOUNT_MAX_OPEN_ORDERS": ("10000", "orders of one account not yet confirmed or failed; 0: no limit"),
    "OEE_API_KEY": ("", "the key `oee lag` sends to the API (an operator's, under AUTH=keys)"),
}

AuthMode = Literal["keys", "off"]


@dataclass(frozen=True, slots=True)
class AccountsOptions:
    """Authentication and per-account limits. The defaults suit production; tests shrink some of them."""

    auth: AuthMode = "off"
    cache_ttl_s: float = 3.0
    cache_max_keys: int = 10_000
    ws_origins: tuple[str, ...] = ()
    order_rate: float = 500.0
    order_burst: int = 1000
    max_open_orders: int = 10_000

    def check_exposure(self, variable: str, host: str) -> None:
        """Raise `ConfigError` (one line) when `AUTH=off` would serve an address other than loopback: like
        Redis's protected mode, anyone reaching it could trade and read every order."""
        if self.auth == "keys" or is_loopback(host):
            return
        raise ConfigError(
            f"AUTH=off on {variable}={host} would let anyone who reaches it trade and read every order: "
            "set AUTH=keys (and create keys with `oee accounts create`), or bind 127.0.0.1"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AccountsOptions:
        env = os.environ if env is None else env
        auth = env_str(env, "AUTH", ACCOUNTS_ENV_VARS).strip().lower()
        if auth not in ("keys", "off"):
            raise ConfigError(f"AUTH={auth!r} must be keys or off")
        origins = env_str(env, "WS_ALLOWED_ORIGINS", ACCOUNTS_ENV_VARS)
        return cls(
            auth="keys" if auth == "keys" else "off",
            # At most 5 s: a revocation must hold on every process within 5 s even if a NOTIFY is lost.
            cache_ttl_s=_int(env, "AUTH_CACHE_TTL_MS", 0, 5000) / 1000,
            cache_max_keys=_int(env, "AUTH_CACHE_MAX_KEYS", 1, 10_000_000),
            ws_origins=tuple(o.strip().rstrip("/").lower() for o in origins.split(",") if o.strip()),
            order_rate=float(_int(env, "ACCOUNT_ORDER_RATE", 0, 1_000_000)),
            order_burst=_int(env, "ACCOUNT_ORDER_BURST", 1, 10_000_000),
            max_open_orders=_int(env, "ACCOUNT_MAX_OPEN_ORDERS", 0, 100_000_000),
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name may resolve to anything: treat it as exposed


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, ACCOUNTS_ENV_VARS)
