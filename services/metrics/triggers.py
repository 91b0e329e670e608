"""The trigger engine's metrics: the book, the market events it read, what they fired and how fast."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.metrics import FAST_BUCKETS

RESTING = Gauge("oee_triggers_resting_orders", "Resting orders in the trigger engine's book")
MARKET_EVENTS = Counter("oee_triggers_market_events", "Market events the trigger engine evaluated")
EVALUATED = Counter(
    "oee_triggers_orders_evaluated",
    "Orders whose executable price a market event made the engine compute (only those it could cross)",
)
FIRED = Counter(
    "oee_triggers_fired",
    "Requests sent to orders' owners: triggered, or refused by a sniper guard",
    ["outcome"],
)
EVENT_TO_REQUEST = Histogram(
    "oee_triggers_event_to_request_seconds",
    "From a market event's time to its trigger requests acknowledged on the intake",
    buckets=FAST_BUCKETS,
)
