"""Metrics helpers for the WebSocket gateway (its engineer wires them; see docs/lag.md).

`observe_delivery(event.occurred_at)` when a live frame is handed to a client's socket: the lag monitor turns
`oee_gateway_delivery_lag_seconds` into the `log_to_gateway` stage lag when the gateway runs inside the API
process (mounted routes); a standalone `oee gateway` exposes it on its own `/metrics`
(`services.metrics.metrics_route()`).
"""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from services.metrics import SLOW_BUCKETS

CONNECTIONS = Gauge("oee_gateway_connections", "Open WebSocket connections")
FRAMES = Counter("oee_gateway_frames_sent", "Frames sent to clients, by kind (history, live)", ["kind"])
SLOW_CLOSES = Counter(
    "oee_gateway_slow_client_closes", "Connections closed because the client read too slowly"
)
DELIVERY_LAG = Histogram(
    "oee_gateway_delivery_lag_seconds",
    "Event occurred_at to its live frame handed to a client's socket",
    buckets=SLOW_BUCKETS,
)


def observe_delivery(occurred_at: datetime, now: float | None = None) -> None:
    now = time.time() if now is None else now
    FRAMES.labels("live").inc()
    DELIVERY_LAG.observe(max(0.0, now - occurred_at.timestamp()))
