"""The ingress's own settings, read from `INGRESS_*` variables (the shared ones come from `services.config`).

`INGRESS_ENV_VARS` documents every variable with its default in the same shape as `services.config.ENV_VARS`
so the project-wide list can include it. A malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, env_int

INGRESS_ENV_VARS: dict[str, tuple[str, str]] = {
    "INGRESS_MAX_BODY_BYTES": ("16384", "largest accepted request body; larger answers 413"),
    "INGRESS_SEND_TIMEOUT_MS": ("5000", "overall deadline for the broker's ack of one order; then 503"),
    "INGRESS_REQUEST_TIMEOUT_MS": ("4000", "producer request_timeout_ms (also how long a batch may wait)"),
    "INGRESS_LINGER_MS": ("2", "producer linger_ms: how long a batch waits for more orders"),
    "INGRESS_RETRY_AFTER_S": ("1", "Retry-After seconds on 503 and 409 answers"),
    "INGRESS_IDEMPOTENCY_TTL_S": (
        "86400",
        "how long this process caches an Idempotency-Key (PostgreSQL: forever)",
    ),
    "INGRESS_IDEMPOTENCY_MAX_KEYS": ("100000", "most keys cached per process; the oldest are dropped first"),
    "INGRESS_IDEMPOTENCY_LEASE_MS": (
        "15000",
        "how long a key stays claimed by a request in flight (> the send deadline); then another may take it",
    ),
    "INGRESS_READY_TIMEOUT_MS": ("2000", "deadline of each /ready check (broker metadata, SELECT 1)"),
    "INGRESS_MAX_RESTING_S": (
        "86400",
        "longest a limit or sniper order may rest (its expiresAt at most this far ahead), and its default",
    ),
    "INGRESS_CANCEL_WAIT_MS": (
        "2000",
        "how long DELETE /api/orders/{id} waits for an order the projection does not show yet, then 404",
    ),
}


@dataclass(frozen=True, slots=True)
class IngressOptions:
    """Tunables of the HTTP ingress. The defaults suit production; tests shrink some of them."""

    max_body_bytes: int = 16 * 1024
    send_timeout_s: float = 5.0
    request_timeout_ms: int = 4000
    linger_ms: int = 2
    retry_after_s: int = 1
    idempotency_ttl_s: float = 86_400.0
    idempotency_max_keys: int = 100_000
    idempotency_lease_s: float = 15.0
    ready_timeout_s: float = 2.0
    max_resting_s: float = 86_400.0
    cancel_wait_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngressOptions:
        env = os.environ if env is None else env
        options = cls(
            max_body_bytes=_int(env, "INGRESS_MAX_BODY_BYTES", 64, 64 * 1024 * 1024),
            send_timeout_s=_int(env, "INGRESS_SEND_TIMEOUT_MS", 1, 600_000) / 1000,
            request_timeout_ms=_int(env, "INGRESS_REQUEST_TIMEOUT_MS", 100, 600_000),
            linger_ms=_int(env, "INGRESS_LINGER_MS", 0, 1000),
            retry_after_s=_int(env, "INGRESS_RETRY_AFTER_S", 0, 3600),
            idempotency_ttl_s=float(_int(env, "INGRESS_IDEMPOTENCY_TTL_S", 1, 30 * 86_400)),
            idempotency_max_keys=_int(env, "INGRESS_IDEMPOTENCY_MAX_KEYS", 1, 100_000_000),
            idempotency_lease_s=_int(env, "INGRESS_IDEMPOTENCY_LEASE_MS", 1000, 3_600_000) / 1000,
            ready_timeout_s=_int(env, "INGRESS_READY_TIMEOUT_MS", 10, 60_000) / 1000,
            # Below the router's 7-day memory of its orders (the state topic's retention), by a wide margin.
            max_resting_s=float(_int(env, "INGRESS_MAX_RESTING_S", 60, 6 * 86_400)),
            cancel_wait_s=_int(env, "INGRESS_CANCEL_WAIT_MS", 0, 10_000) / 1000,
        )
        if options.idempotency_lease_s <= options.send_timeout_s:
            # A lease shorter than a send would let a retry take over a key whose first send may still land.
            raise ConfigError(
                f"INGRESS_IDEMPOTENCY_LEASE_MS ({options.idempotency_lease_s * 1000:.0f}) must be longer than"
                f" INGRESS_SEND_TIMEOUT_MS ({options.send_timeout_s * 1000:.0f})"
            )
        return options


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, INGRESS_ENV_VARS)
