"""The API's order intake metrics: accepted, rejected by reason, latency and requests in progress."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

from services.metrics import FAST_BUCKETS

ACCEPTED = Counter(
    "oee_ingress_orders_accepted",
    "Orders answered 201 (replayed: an Idempotency-Key seen before, answered with the first order)",
    ["replayed"],
)
REJECTED = Counter(
    "oee_ingress_orders_rejected",
    "Order requests not accepted, by reason: invalid, too_large, unsupported_media_type, key_reused, "
    "key_in_flight, keys_unavailable, broker_unavailable, outcome_unknown, error",
    ["reason"],
)
LATENCY = Histogram(
    "oee_ingress_request_seconds",
    "Time to answer POST /api/orders/execute (validation, broker ack with acks=all, reply)",
    buckets=FAST_BUCKETS,
)
IN_FLIGHT = Gauge("oee_ingress_in_flight_requests", "POST /api/orders/execute requests being handled")

_REASONS = {
    400: "invalid",
    409: "key_in_flight",
    413: "too_large",
    415: "unsupported_media_type",
    422: "key_reused",
    503: "broker_unavailable",
}
REJECT_REASON = "reject_reason"
"""`request.state` attribute a handler sets when the status code alone does not say why (503 unknown outcome)."""


def instrument(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap the order endpoint: count its answers by outcome, time it, and gauge requests in progress."""

    async def instrumented(request: Request) -> Response:
        IN_FLIGHT.inc()
        start = time.perf_counter()
        try:
            response = await endpoint(request)
        except Exception:
            REJECTED.labels("error").inc()
            raise
        finally:
            LATENCY.observe(time.perf_counter() - start)
            IN_FLIGHT.dec()
        code = response.status_code
        if code == 201:
            ACCEPTED.labels("true" if "idempotent-replayed" in response.headers else "false").inc()
        else:
            reason = getattr(request.state, REJECT_REASON, None) or _REASONS.get(code, "error")
            REJECTED.labels(reason).inc()
        return response

    return instrumented
