"""The WebSocket gateway's metrics (docs/lag.md lists them).

The gateway's connection writer calls `observe_delivery` when it has handed a live event's frame to a
client's socket; the gateway counts connections (`CONNECTIONS`) and slow-client closes (`SLOW_CLOSES`). The
API hands `DELIVERY_LAG` to its lag monitor (the `log_to_gateway` stage); a standalone `oee gateway` serves
all of them on its own `/metrics`.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from services.metrics import SLOW_BUCKETS

CONNECTIONS = Gauge("oee_gateway_connections", "Open WebSocket connections")
FRAMES = Counter(
    "oee_gateway_frames_sent", "Frames sent to clients, by kind (live: events as they happen)", ["kind"]
)
SLOW_CLOSES = Counter(
    "oee_gateway_slow_client_closes", "Connections closed because the client read too slowly"
)
DELIVERY_LAG = Histogram(
    "oee_gateway_delivery_lag_seconds",
    "Event occurred_at to its live frame handed to a client's socket",
    buckets=SLOW_BUCKETS,
)


_LIVE_FRAMES = FRAMES.labels("live")  # resolved once: this runs for every live frame sent


def observe_delivery(occurred_at: float, now: float | None = None) -> None:
    """A live frame of an event that occurred at `occurred_at` (epoch seconds) was handed to a socket."""
    now = time.time() if now is None else now
    _LIVE_FRAMES.inc()
    DELIVERY_LAG.observe(max(0.0, now - occurred_at))
