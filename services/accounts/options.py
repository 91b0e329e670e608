"""How the API authenticates and limits accounts, read from the environment (`AUTH`, `AUTH_*`, `ACCOUNT_*`,
`WS_ALLOWED_ORIGINS`). `ACCOUNTS_ENV_VARS` documents each with its default, like every component's table.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from services.envvars import ConfigError, choice, integer, millis, number, parsed, read, table

AuthMode = Literal["keys", "off"]
_NO_ORIGINS: tuple[str, ...] = ()  # beyond the API's own


@dataclass(frozen=True, slots=True)
class AccountsOptions:
    """Authentication and per-account limits. The defaults suit production; tests shrink some of them."""

    auth: AuthMode = choice(
        "AUTH", "off",
        "keys: every route but /health, /ready and the page shells needs an API key; "
        "off: one implicit `local` account, allowed only on a loopback HOST",
        ("keys", "off"),
    )  # fmt: skip
    # At most 5 s: a revocation must hold on every process within 5 s even if a NOTIFY is lost.
    cache_ttl_s: float = millis(
        "AUTH_CACHE_TTL_MS", 3.0,
        "how long a verified key is trusted before PostgreSQL is asked again (NOTIFY clears it sooner)", 0, 5000,
    )  # fmt: skip
    cache_max_keys: int = integer(
        "AUTH_CACHE_MAX_KEYS", 10_000, "key ids (known or not) one API process remembers", 1, 10_000_000
    )
    ws_origins: tuple[str, ...] = parsed(
        "WS_ALLOWED_ORIGINS", _NO_ORIGINS, "",
        "browser origins that may open WebSockets besides the API's own (comma-separated; * for any)",
        lambda raw: tuple(o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip()),
    )  # fmt: skip
    # Defaults well above what one healthy client needs (the whole pipeline finishes ~300 orders/s here): the
    # limits stop a runaway or hostile client from filling the log and the router, they do not shape traffic.
    order_rate: float = number(
        "ACCOUNT_ORDER_RATE", 500.0, "orders per second one account may place per API process; 0: no limit",
        0, 1_000_000, whole=True,
    )  # fmt: skip
    order_burst: int = integer(
        "ACCOUNT_ORDER_BURST",
        1000,
        "orders one account may place at once (the token bucket's size)",
        1,
        10_000_000,
    )
    max_open_orders: int = integer(
        "ACCOUNT_MAX_OPEN_ORDERS", 10_000, "orders of one account not yet confirmed or failed; 0: no limit",
        0, 100_000_000,
    )  # fmt: skip

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
        return read(cls, os.environ if env is None else env)


ACCOUNTS_ENV_VARS: dict[str, tuple[str, str]] = {
    **table(AccountsOptions),
    # Read by the clients (`oee lag`, `oee order`), not by the API.
    "OEE_API_KEY": ("", "the key `oee lag` sends to the API (an operator's, under AUTH=keys)"),
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name may resolve to anything: treat it as exposed
