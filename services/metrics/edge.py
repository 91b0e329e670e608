"""The edge's metrics: requests and WebSocket handshakes refused before any route ran, by reason."""

from __future__ import annotations

from prometheus_client import Counter

REFUSED = Counter(
    "oee_api_refused",
    "Requests and handshakes the edge refused, by reason: unauthenticated (401), forbidden (403: disabled "
    "account), operator_only (403), auth_unavailable (503), origin (403), order_rate (429), open_orders (429)",
    ["reason"],
)
