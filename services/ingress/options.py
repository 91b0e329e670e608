"""The ingress's own settings, each declared once with its `INGRESS_*` variable (`services.envvars`).

`INGRESS_ENV_VARS` is derived from the declarations. A malformed value raises `ConfigError` naming the
variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, integer, millis, number, read, table


@dataclass(frozen=True, slots=True)
class IngressOptions:
    """Tunables of the HTTP ingress. The defaults suit production; tests shrink some of them."""

    max_body_bytes: int = integer(
        "INGRESS_MAX_BODY_BYTES",
        16 * 1024,
        "largest accepted request body; larger answers 413",
        64,
        64 * 1024 * 1024,
    )
    send_timeout_s: float = millis(
        "INGRESS_SEND_TIMEOUT_MS",
        5.0,
        "overall deadline for the broker's ack of one order; then 503",
        1,
        600_000,
    )
    request_timeout_ms: int = integer(
        "INGRESS_REQUEST_TIMEOUT_MS",
        4000,
        "producer request_timeout_ms (also how long a batch may wait)",
        100,
        600_000,
    )
    linger_ms: int = integer(
        "INGRESS_LINGER_MS", 2, "producer linger_ms: how long a batch waits for more orders", 0, 1000
    )
    retry_after_s: int = integer(
        "INGRESS_RETRY_AFTER_S", 1, "Retry-After seconds on 503 and 409 answers", 0, 3600
    )
    idempotency_ttl_s: float = number(
        "INGRESS_IDEMPOTENCY_TTL_S", 86_400.0, "how long this process caches an Idempotency-Key (PostgreSQL: forever)",
        1, 30 * 86_400, whole=True,
    )  # fmt: skip
    idempotency_max_keys: int = integer(
        "INGRESS_IDEMPOTENCY_MAX_KEYS", 100_000, "most keys cached per process; the oldest are dropped first",
        1, 100_000_000,
    )  # fmt: skip
    idempotency_lease_s: float = millis(
        "INGRESS_IDEMPOTENCY_LEASE_MS", 15.0,
        "how long a key stays claimed by a request in flight (> the send deadline); then another may take it",
        1000, 3_600_000,
    )  # fmt: skip
    ready_timeout_s: float = millis(
        "INGRESS_READY_TIMEOUT_MS",
        2.0,
        "deadline of each /ready check (broker metadata, SELECT 1)",
        10,
        60_000,
    )
    # At most 6 days: below the router's 7-day memory of its orders (the state topic's retention), by a wide margin.
    max_resting_s: float = number(
        "INGRESS_MAX_RESTING_S", 86_400.0,
        "longest a limit or sniper order may rest (its expiresAt at most this far ahead), and its default",
        60, 6 * 86_400, whole=True,
    )  # fmt: skip
    cancel_wait_s: float = millis(
        "INGRESS_CANCEL_WAIT_MS", 2.0,
        "how long DELETE /api/orders/{id} waits for an order the projection does not show yet, then 404", 0, 10_000,
    )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngressOptions:
        options = read(cls, os.environ if env is None else env)
        if options.idempotency_lease_s <= options.send_timeout_s:
            # A lease shorter than a send would let a retry take over a key whose first send may still land.
            raise ConfigError(
                f"INGRESS_IDEMPOTENCY_LEASE_MS ({options.idempotency_lease_s * 1000:.0f}) must be longer than"
                f" INGRESS_SEND_TIMEOUT_MS ({options.send_timeout_s * 1000:.0f})"
            )
        return options


INGRESS_ENV_VARS = table(IngressOptions)
