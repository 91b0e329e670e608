"""The router's metrics, observed from what each committed transaction appended.

`observe_commit` runs after a transaction committed, so nothing is counted that a reader of the log will not
see. Durations are differences of the events' `occurred_at`: intake delay (OrderRequested -> OrderRouting),
routing (OrderRouting -> OrderSubmitted) and end to end (the request's `occurred_at`, i.e. the POST, to the
terminal event). The earlier times of an order are remembered in memory until its terminal event; an order
restored after a restart has none, so its durations are not observed (the lag monitor's stage lags, read
from the log, cover those too).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

from prometheus_client import Counter, Gauge, Histogram

from events.envelope import Event
from events.types import STATUS
from services.metrics import SLOW_BUCKETS

log = logging.getLogger("oee.router")

TRANSITIONS = Counter(
    "oee_router_transitions", "Orders moved to a status by the router's committed events", ["status"]
)
DECISIONS = Counter("oee_router_decisions", "Routing decisions (OrderBuilding), by chosen venue", ["venue"])
DEAD_LETTERS = Counter("oee_router_dead_letters", "Intake records the router moved to the dead-letter topic")
INTAKE_DELAY = Histogram(
    "oee_router_intake_delay_seconds",
    "OrderRequested.occurred_at (ingress) to OrderRouting.occurred_at (router took the order)",
    buckets=SLOW_BUCKETS,
)
ROUTING = Histogram(
    "oee_router_routing_seconds",
    "OrderRouting to OrderSubmitted: quoting both venues, choosing, and any quote retries",
    buckets=SLOW_BUCKETS,
)
END_TO_END = Histogram(
    "oee_order_end_to_end_seconds",
    "The request's occurred_at (POST accepted) to the terminal event, by outcome",
    ["outcome"],
    buckets=SLOW_BUCKETS,
)
DUPLICATES = Counter(
    "oee_router_duplicates_ignored",
    "Requests for an order id the router had already admitted, ignored; by where they were caught: the"
    " router's memory, or the durable record of admitted ids (after the memory forgot the order)",
    ["caught_by"],
)
EXPIRATIONS = Counter(
    "oee_router_expirations",
    "Orders failed with reason 'expired': the swap's landing deadline passed and the venue never executed it",
)
RECOVERIES = Counter(
    "oee_router_recoveries",
    "Partitions whose commit failed, by outcome: recovered in-process (new producer, state restored),"
    " dropped because another router fenced it, or given up (the process stops)",
    ["outcome"],
)
COMMANDS_IGNORED = Counter(
    "oee_router_commands_ignored",
    "Cancel and trigger requests that changed nothing: the order had moved on (a trigger repeated after a"
    " restart of the engine, a cancel of a finished order), or it is not this router's",
)
CONTAINED = Counter(
    "oee_router_orders_contained",
    "Orders ended failed because their own processing raised (an event failing validation, arithmetic on a"
    " venue's answer), by stage: the router went on with the others instead of stopping",
    ["stage"],
)
IN_FLIGHT = Gauge("oee_router_in_flight_orders", "Orders this router holds that have no terminal event yet")

# Label children resolved once: `labels()` costs a locked dict lookup, and this runs for every event.
_BY_STATUS = {status: TRANSITIONS.labels(status) for status in STATUS.values()}
_BY_OUTCOME = {status: END_TO_END.labels(status) for status in ("confirmed", "failed")}

_MAX_REMEMBERED = 500_000  # orders whose start times are kept; the oldest are forgotten first


# order id -> (requested_at, routing_at) epoch seconds, until the order's terminal event; oldest dropped first.
_starts: OrderedDict[str, tuple[float, float | None]] = OrderedDict()


def observe_commit(events: Sequence[Event], dead_letters: int = 0) -> None:
    """Count and time what one committed transaction appended (in log order): ~10 µs per order on an idle core."""
    if dead_letters:
        DEAD_LETTERS.inc(dead_letters)
    for event in events:
        kind = event.type
        status = STATUS.get(kind)
        if status is None:  # an event that leaves the status as it is (a refused cancel)
            continue
        _BY_STATUS[status].inc()
        if kind == "OrderBuilding":
            DECISIONS.labels(event.data.selected_venue).inc()  # type: ignore[attr-defined]
            continue
        at = event.occurred_at.timestamp()
        if kind in ("OrderRequested", "OrderTriggered"):  # a resting order's routing starts at its trigger
            _starts[event.order_id] = (at, None)
            if len(_starts) > _MAX_REMEMBERED:
                _starts.popitem(last=False)
        elif kind == "OrderRouting":
            started = _starts.get(event.order_id)
            if started is not None:
                INTAKE_DELAY.observe(max(0.0, at - started[0]))
                _starts[event.order_id] = (started[0], at)
        elif kind == "OrderSubmitted":
            started = _starts.get(event.order_id)
            if started is not None and started[1] is not None:
                ROUTING.observe(max(0.0, at - started[1]))
        elif kind == "OrderOpened":
            _starts.pop(event.order_id, None)  # how long it rests is the market's business, not a delay
        elif status in ("confirmed", "failed"):
            started = _starts.pop(event.order_id, None)
            if started is not None:
                _BY_OUTCOME[status].observe(max(0.0, at - started[0]))
        elif status in ("expired", "cancelled"):
            _starts.pop(event.order_id, None)


def track_in_flight(count: Callable[[], int]) -> None:
    """Report `count()` as the in-flight gauge at each scrape. The scrape runs on the metrics server's
    thread while the event loop mutates the router's maps: a count that races a change is retried once and
    otherwise skipped (the previous value stands)."""
    last = [0]

    def read() -> float:
        for _ in range(2):
            try:
                last[0] = count()
                break
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
        return float(last[0])

    IN_FLIGHT.set_function(read)
