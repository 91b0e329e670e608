"""The router core's knobs, with the defaults it runs with (`services.config.load_router` fills the ones
that have an environment variable; the rest are for tests that need a faster clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterOptions:
    quote_timeout_s: float = 2.0
    backoff: tuple[float, ...] | None = None  # quote retry delays; None: the seed's 1 s, 2 s
    submit_retry_s: float = 0.5  # first wait before resubmitting after VenueUnavailable; doubles, capped
    submit_retry_cap_s: float = 5.0
    reconcile_after_s: float = 10.0  # a submitted order without news this long is looked up
    reconcile_every_s: float = 2.0
    lookup_retry_cap_s: float = 30.0  # longest wait between status lookups of a venue that does not answer
    landing_deadline_s: float = 60.0  # a swap's valid_until = its submitted event's time + this
    status_grace_s: float = 5.0  # how long after valid_until a swap may still read `unknown` (visibility)
    offsets_every_s: float = 1.0  # how often a partition's group offset follows its position (worker.py)
    memory_orders: int = 200_000  # finished orders remembered per partition (a cache before the database)
    recovery_limit: int = 5  # failed commits recovered in-process per window; one more stops the process
    recovery_window_s: float = 60.0
    recovery_backoff_s: tuple[float, float] = (0.5, 8.0)  # first and longest wait before reopening
