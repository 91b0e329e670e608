"""The lag monitor's settings, read from `LAG_*` variables (the shared ones come from `services.config`).

`LAG_ENV_VARS` has the shape of `services.config.ENV_VARS` so the project-wide list can include it. A
malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.config import ConfigError, RouterSettings, env_float, env_str
from services.lag.rules import Thresholds

LAG_ENV_VARS: dict[str, tuple[str, str]] = {
    "LAG_INTERVAL_MS": ("2000", "how often the API samples lag (0: no lag monitor, /api/lag answers 503)"),
    "LAG_WINDOW_S": ("30", "sliding window the status rules look at (docs/lag.md)"),
    "LAG_MIN_SAMPLES": ("3", "samples a window needs before a trend rule (STALL, STOPPED, WARN) applies"),
    "LAG_ERR_OFFSETS": ("100000", "offset lag at which a partition is ERR (0: off)"),
    "LAG_ERR_SECONDS": ("300", "time lag (seconds) at which a partition is ERR (0: off)"),
    "LAG_SCOPE": ("deployment", "deployment: groups on this deployment's topics; broker: every group"),
    "LAG_WARMUP_EVENTS": ("2000", "recent events per partition the order view reads when the API starts"),
    "LAG_STUCK_PENDING_S": ("30", "an order pending (not yet taken by a router) this long is stuck"),
    "LAG_STUCK_ROUTING_S": (
        "",
        "routing/building this long is stuck; unset: the router's backoff budget + 5 s",
    ),
    "LAG_STUCK_SUBMITTED_S": ("30", "an order submitted to a venue this long without a settlement is stuck"),
}


@dataclass(frozen=True, slots=True)
class LagOptions:
    interval_s: float = 2.0
    window_s: float = 30.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    scope: str = "deployment"
    warmup_events: int = 2000
    stuck_s: Mapping[str, float] = field(
        default_factory=lambda: {"pending": 30.0, "routing": 14.0, "building": 14.0, "submitted": 30.0}
    )
    projector_alive_s: float = 10.0  # a projection position checked this recently has a live projector
    stats_window_s: float = 60.0  # dwell and stage durations summarise this much recent history

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, router: RouterSettings | None = None
    ) -> LagOptions:
        env = os.environ if env is None else env
        scope = _get(env, "LAG_SCOPE")
        if scope not in ("deployment", "broker"):
            raise ConfigError(f"LAG_SCOPE={scope!r} must be deployment or broker")
        routing = _get(env, "LAG_STUCK_ROUTING_S")
        routing_s = _float(env, "LAG_STUCK_ROUTING_S") if routing else routing_budget(router)
        return cls(
            interval_s=_float(env, "LAG_INTERVAL_MS", high=3_600_000) / 1000,
            window_s=_float(env, "LAG_WINDOW_S", low=0.1),
            thresholds=Thresholds(
                min_samples=int(_float(env, "LAG_MIN_SAMPLES", low=2, high=1000)),
                err_offsets=int(_float(env, "LAG_ERR_OFFSETS", high=1e15)),
                err_seconds=_float(env, "LAG_ERR_SECONDS"),
            ),
            scope=scope,
            warmup_events=int(_float(env, "LAG_WARMUP_EVENTS", high=10_000_000)),
            stuck_s={
                "pending": _float(env, "LAG_STUCK_PENDING_S", low=0.1),
                "routing": routing_s,
                "building": routing_s,
                "submitted": _float(env, "LAG_STUCK_SUBMITTED_S", low=0.1),
            },
        )


def routing_budget(router: RouterSettings | None = None) -> float:
    """How long an order may legitimately stay in routing: every quote attempt timing out, the backoff
    between attempts, and 5 s of slack for the transactions in between."""
    from services.router.flow import MAX_ATTEMPTS

    if router is None:
        from services.config import load_router

        router = load_router()
    attempts = min(len(router.backoff) + 1, MAX_ATTEMPTS)
    return round(attempts * router.quote_timeout_s + sum(router.backoff[: attempts - 1]) + 5.0, 3)


def _get(env: Mapping[str, str], name: str) -> str:
    return env_str(env, name, LAG_ENV_VARS)


def _float(env: Mapping[str, str], name: str, low: float = 0.0, high: float = 1e9) -> float:
    return env_float(env, name, low, high, LAG_ENV_VARS)
