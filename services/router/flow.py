"""The router's per-order work as pure steps: given what it remembers of an order and what just happened
(a request, quotes or their absence, a settlement), the events to append and what to remember next.

No I/O and no clock of its own: the caller passes `now`. The router core runs these steps inside Kafka
transactions; `Tracked` is what it writes to its state topic, so a restarted router resumes every order
exactly where the committed log left it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from events.envelope import Event
from events.payloads import OrderRequestedData
from events.types import OrderRequested, new_event
from services.router.routing import NoRoute, backoff_delays, choose_route, min_acceptable_price
from services.venue.interface import SwapStatus, VenueQuote

MAX_ATTEMPTS = 3
Phase = Literal["routing", "submitted", "done"]


@dataclass(frozen=True, slots=True)
class Tracked:
    """What the router remembers of one order between steps (and across restarts, via its state topic).

    `phase`: `routing` (waiting for a quote retry at `retry_at`), `submitted` (the swap is with `venue`,
    waiting for its settlement), `done` (terminal event written; kept so a duplicate request is ignored).
    """

    order_id: str
    phase: Phase
    last_seq: int
    last_event_id: str
    request: OrderRequestedData
    attempts: int = 1
    retry_at: float | None = None  # epoch seconds
    venue: str | None = None
    limit_price: float | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one step: events to append (in order) and the order's next memory."""

    events: list[Event]
    tracked: Tracked

    @property
    def submit(self) -> bool:
        """True when this step handed the order to a venue: the caller submits after the commit."""
        return any(e.type == "OrderSubmitted" for e in self.events)


def event_id(order_id: str, seq: int) -> str:
    """Deterministic id of the router's event `seq` of an order: a causation can be named without state,
    and a replayed step produces the very same event."""
    return str(uuid.uuid5(uuid.UUID(order_id), f"seq-{seq}"))


def _next(tracked: Tracked, kind: str, data: dict, now: datetime) -> tuple[Event, Tracked]:
    seq = tracked.last_seq + 1
    event = new_event(
        kind,
        order_id=tracked.order_id,
        seq=seq,
        data=data,
        causation_id=tracked.last_event_id,
        occurred_at=now,
        event_id=event_id(tracked.order_id, seq),
    )
    return event, replace(tracked, last_seq=seq, last_event_id=event.event_id)


def accept(request: OrderRequested, now: datetime) -> Step:
    """A new order: the request's copy opens the order's stream (seq 1), then `routing` (seq 2)."""
    tracked = Tracked(
        order_id=request.order_id,
        phase="routing",
        last_seq=request.seq,
        last_event_id=request.event_id,
        request=request.data,
    )
    routing, tracked = _next(tracked, "OrderRouting", {"attempt": 1}, now)
    return Step([request, routing], tracked)


def quoted(
    tracked: Tracked,
    quotes: Sequence[VenueQuote],
    errors: Sequence[str],
    now: datetime,
    backoff: Sequence[float] | None = None,
) -> Step:
    """Quotes are in (some venues may have failed). With at least one: `building` then `submitted`.
    With none: wait and retry (3 attempts, exponential backoff), then `failed` with every venue's reason."""
    side = tracked.request.side
    try:
        decision = choose_route(quotes, side)
    except NoRoute:
        delays = list(backoff_delays(MAX_ATTEMPTS) if backoff is None else backoff)
        if tracked.attempts <= len(delays) and tracked.attempts < MAX_ATTEMPTS:
            retry_at = now.timestamp() + delays[tracked.attempts - 1]
            return Step([], replace(tracked, attempts=tracked.attempts + 1, retry_at=retry_at))
        reason = f"no venue quoted after {tracked.attempts} attempts: " + ("; ".join(errors) or "no venues")
        return fail(tracked, reason, "routing", now)
    chosen = decision.quote
    building_data = {
        "quotes": [_quote(q) for q in decision.quotes],
        "selected_venue": decision.venue,
        "reason": decision.reason,
        "attempts": tracked.attempts,
    }
    building, tracked = _next(tracked, "OrderBuilding", building_data, now)
    limit = min_acceptable_price(chosen.price, side, tracked.request.slippage_bps)
    submitted_data = {
        "venue": decision.venue,
        "client_order_id": tracked.order_id,
        "expected_price": chosen.price,
        "min_acceptable_price": limit,
        "slippage_bps": tracked.request.slippage_bps,
    }
    submitted, tracked = _next(tracked, "OrderSubmitted", submitted_data, now)
    tracked = replace(tracked, phase="submitted", venue=decision.venue, limit_price=limit, retry_at=None)
    return Step([building, submitted], tracked)


def settled(tracked: Tracked, status: SwapStatus, now: datetime) -> Step:
    """The venue settled the swap: `confirmed` with the fill, or `failed` with the venue's reason.
    A settlement for an order that is not waiting for one (a duplicate) changes nothing."""
    if tracked.phase != "submitted" or not status.terminal:
        return Step([], tracked)
    if status.state == "confirmed":
        data = {
            "venue": status.venue,
            "tx_hash": status.tx_hash,
            "executed_price": status.executed_price,
            "amount_in": tracked.request.amount_in,
            "amount_out": status.amount_out,
            "client_order_id": status.client_order_id,
        }
        event, tracked = _next(tracked, "OrderConfirmed", data, now)
        return Step([event], replace(tracked, phase="done"))
    return fail(tracked, status.reason or "the venue reported the swap failed", "execution", now)


def fail(tracked: Tracked, reason: str, stage: Literal["routing", "execution"], now: datetime) -> Step:
    data = {
        "reason": reason[:4096],
        "stage": stage,
        "attempts": tracked.attempts,
        "venue": tracked.venue,
        "client_order_id": tracked.order_id if stage == "execution" else None,
    }
    event, tracked = _next(tracked, "OrderFailed", data, now)
    return Step([event], replace(tracked, phase="done", retry_at=None))


def _quote(q: VenueQuote) -> dict:
    return {
        "venue": q.venue,
        "price": q.price,
        "fee_bps": q.fee_bps,
        "amount_in": q.amount_in,
        "amount_out": q.amount_out,
        "price_impact_bps": q.price_impact_bps,
        "quoted_at": q.quoted_at,
    }
