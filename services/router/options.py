"""The router's knobs: the ones with an environment variable (`ROUTER_*`) declared with their defaults, the
rest for tests that need a faster clock. `ROUTER_ENV_VARS` is derived from the declarations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import integer, millis, millis_list, parsed, read, table
from services.router.routing import backoff_delays
from services.static_membership import instance_id


@dataclass(frozen=True)
class RouterOptions:
    batch_max: int = integer(
        "ROUTER_BATCH_MAX", 500, "most intake records in one router batch (one transaction per partition)",
        1, 100_000,
    )  # fmt: skip
    quote_timeout_s: float = millis("ROUTER_QUOTE_TIMEOUT_MS", 2.0, "per-venue quote timeout", 1, 600_000)
    # Quote retry delays: the seed's 1 s, 2 s (None: the same, computed by `flow.quoted`).
    backoff: tuple[float, ...] | None = millis_list(
        "ROUTER_BACKOFF_MS",
        tuple(backoff_delays()),
        "waits before quote attempts 2 and 3 when no venue quotes",
    )
    submit_retry_s: float = 0.5  # first wait before resubmitting after VenueUnavailable; doubles, capped
    submit_retry_cap_s: float = 5.0
    reconcile_after_s: float = 10.0  # a submitted order without news this long is looked up
    reconcile_every_s: float = 2.0
    lookup_retry_cap_s: float = 30.0  # longest wait between status lookups of a venue that does not answer
    # A swap's valid_until = its submitted event's time + this.
    landing_deadline_s: float = millis(
        "ROUTER_LANDING_DEADLINE_MS", 60.0, "a swap's valid_until: this long after its submitted event",
        1, 86_400_000,
    )  # fmt: skip
    # How long after valid_until a swap may still read `unknown` (visibility).
    status_grace_s: float = millis(
        "ROUTER_STATUS_GRACE_MS", 5.0,
        "how long after valid_until a venue may still not show a swap it accepted, before it is expired",
        0, 3_600_000,
    )  # fmt: skip
    offsets_every_s: float = 1.0  # how often a partition's group offset follows its position (worker.py)
    # Finished orders remembered per partition (a cache before the database).
    memory_orders: int = integer(
        "ROUTER_MEMORY_ORDERS", 200_000,
        "finished orders the router remembers per partition (a cache: the database keeps every order id)",
        0, 100_000_000,
    )  # fmt: skip
    instance_id: str | None = parsed(
        "ROUTER_INSTANCE_ID", None, "",
        "static membership id in the router's consumer group (a restart takes its partitions back at once);"
        " unset: dynamic membership. `up` gives each instance its own",
        instance_id("ROUTER_INSTANCE_ID"),
    )  # fmt: skip
    recovery_limit: int = 5  # failed commits recovered in-process per window; one more stops the process
    recovery_window_s: float = 60.0
    recovery_backoff_s: tuple[float, float] = (0.5, 8.0)  # first and longest wait before reopening

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RouterOptions:
        return read(cls, env)


ROUTER_ENV_VARS = table(RouterOptions)
