"""The lag monitor's settings, declared with their `LAG_*` variables (`services.envvars`).

`LAG_ENV_VARS` is derived from the declarations. The status rules' thresholds default to the rules' own
(`rules.Thresholds`); the routing stuck threshold, unset, is the router's backoff budget. A malformed value
raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import choice, integer, millis, number, parse_float, parsed, read, table
from services.lag.rules import Thresholds
from services.router.flow import MAX_ATTEMPTS
from services.router.options import RouterOptions
from services.router.routing import backoff_delays

_RULES = Thresholds()


def _optional_seconds(raw: str) -> float | None:
    return None if raw == "" else parse_float("LAG_STUCK_ROUTING_S", raw, 0.0, 1e9)


@dataclass(frozen=True, slots=True)
class LagOptions:
    interval_s: float = millis(
        "LAG_INTERVAL_MS", 2.0, "how often the API samples lag (0: no lag monitor, /api/lag answers 503)",
        0, 3_600_000, whole=False,
    )  # fmt: skip
    window_s: float = number(
        "LAG_WINDOW_S", 30.0, "sliding window the status rules look at (docs/lag.md)", 0.1, 1e9
    )
    min_samples: int = integer(
        "LAG_MIN_SAMPLES", _RULES.min_samples,
        "samples a window needs before a trend rule (STALL, STOPPED, WARN) applies", 2, 1000,
    )  # fmt: skip
    err_offsets: int = integer(
        "LAG_ERR_OFFSETS", _RULES.err_offsets, "offset lag at which a partition is ERR (0: off)", 0, 10**15
    )
    err_seconds: float = number(
        "LAG_ERR_SECONDS",
        _RULES.err_seconds,
        "time lag (seconds) at which a partition is ERR (0: off)",
        0,
        1e9,
    )
    scope: str = choice(
        "LAG_SCOPE", "deployment", "deployment: groups on this deployment's topics; broker: every group",
        ("deployment", "broker"),
    )  # fmt: skip
    warmup_events: int = integer(
        "LAG_WARMUP_EVENTS", 2000, "recent events per partition the order view reads when the API starts",
        0, 10_000_000,
    )  # fmt: skip
    stuck_pending_s: float = number(
        "LAG_STUCK_PENDING_S",
        30.0,
        "an order pending (not yet taken by a router) this long is stuck",
        0.1,
        1e9,
    )
    # None: the router's backoff budget (`routing_budget`).
    stuck_routing_s: float | None = parsed(
        "LAG_STUCK_ROUTING_S", None, "", "routing/building this long is stuck; unset: the router's backoff budget + 5 s",
        _optional_seconds,
    )  # fmt: skip
    stuck_submitted_s: float = number(
        "LAG_STUCK_SUBMITTED_S", 30.0, "an order submitted to a venue this long without a settlement is stuck",
        0.1, 1e9,
    )  # fmt: skip
    projector_alive_s: float = 10.0  # a projection position checked this recently has a live projector
    stats_window_s: float = 60.0  # dwell and stage durations summarise this much recent history

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, router: RouterOptions | None = None
    ) -> LagOptions:
        """The options from `env` (the process's environment when None); the routing threshold, unset, from
        `router` (else the router's own settings read from the same environment)."""
        env = os.environ if env is None else env
        options = read(cls, env)
        if options.stuck_routing_s is None:
            budget = routing_budget(router or RouterOptions.from_env(env))
            options = dataclasses.replace(options, stuck_routing_s=budget)
        return options

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.min_samples, self.err_offsets, self.err_seconds)

    @property
    def stuck_s(self) -> dict[str, float]:
        """Status -> how long an order may stay in it before it is stuck."""
        routing = (
            self.stuck_routing_s if self.stuck_routing_s is not None else routing_budget(RouterOptions())
        )
        return {
            "pending": self.stuck_pending_s,
            "routing": routing,
            "building": routing,
            "submitted": self.stuck_submitted_s,
        }


def routing_budget(router: RouterOptions) -> float:
    """How long an order may legitimately stay in routing: every quote attempt timing out, the backoff
    between attempts, and 5 s of slack for the transactions in between."""
    backoff = router.backoff if router.backoff is not None else tuple(backoff_delays(MAX_ATTEMPTS))
    attempts = min(len(backoff) + 1, MAX_ATTEMPTS)
    return round(attempts * router.quote_timeout_s + sum(backoff[: attempts - 1]) + 5.0, 3)


LAG_ENV_VARS = table(LagOptions)
