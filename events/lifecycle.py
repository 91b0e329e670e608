"""The order state machine: one transition table and one pure reducer for every service. The projector
(and its rebuild) folds events with `apply`; the router checks each event it builds against `TRANSITIONS`
before writing it (`services/router/flow.py`), its own notion of what it waits for derived from the status;
the gateway and the lag view read `is_terminal` / `TERMINAL` from here.

`TRANSITIONS` maps (current status, event type) to the next status; anything not in it is illegal. `apply`
checks, in this order, that the event belongs to the order, is the next one in its stream (`DuplicateEvent`
for seq <= last_seq, which consumers drop; `SequenceGap` for a skipped seq) and is a legal transition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from msgspec.structs import replace

from events.envelope import LOCAL_ACCOUNT, Event, Side, Status
from events.errors import DuplicateEvent, IllegalTransition, LifecycleError, SequenceGap, WrongOrder
from events.payloads import Payload, Quote
from events.types import (
    OrderBuilding,
    OrderCancelled,
    OrderCancelRefused,
    OrderConfirmed,
    OrderExpired,
    OrderFailed,
    OrderOpened,
    OrderRequested,
    OrderRouting,
    OrderSubmitted,
    OrderTriggered,
    new_event,
)

__all__ = [
    "CANCELLABLE",
    "RESTING",
    "STATUSES",
    "TERMINAL",
    "TRANSITIONS",
    "DuplicateEvent",
    "IllegalTransition",
    "LifecycleError",
    "OrderState",
    "SequenceGap",
    "WrongOrder",
    "apply",
    "can_transition",
    "fold",
    "is_terminal",
    "next_event",
]

STATUSES: tuple[Status, ...] = (
    "pending", "open", "triggered", "routing", "building", "submitted", "confirmed", "failed", "expired",
    "cancelled",
)  # fmt: skip
TERMINAL: frozenset[Status] = frozenset({"confirmed", "failed", "expired", "cancelled"})
RESTING: frozenset[Status] = frozenset({"open"})
"""Statuses in which an order waits for the market, not for the engine: never "stuck", however long."""
CANCELLABLE: frozenset[Status] = frozenset({"pending", "open", "triggered", "routing", "building"})
"""Statuses from which a cancel ends the order: nothing has been sent to a venue yet."""

TRANSITIONS: dict[tuple[Status | None, str], Status] = {
    (None, "OrderRequested"): "pending",
    # a market order routes at once; a limit or sniper order rests until the trigger engine fires it
    ("pending", "OrderRouting"): "routing",
    ("pending", "OrderOpened"): "open",
    ("open", "OrderTriggered"): "triggered",
    ("triggered", "OrderRouting"): "routing",
    ("routing", "OrderBuilding"): "building",
    ("building", "OrderSubmitted"): "submitted",
    ("submitted", "OrderConfirmed"): "confirmed",
    ("pending", "OrderFailed"): "failed",
    ("open", "OrderFailed"): "failed",  # a sniper whose guard refused the listing
    ("triggered", "OrderFailed"): "failed",
    ("routing", "OrderFailed"): "failed",
    ("building", "OrderFailed"): "failed",
    ("submitted", "OrderFailed"): "failed",
    ("open", "OrderExpired"): "expired",
    **{(status, "OrderCancelled"): "cancelled" for status in CANCELLABLE},
    ("submitted", "OrderCancelRefused"): "submitted",  # too late: recorded, the order carries on
}
"""Every legal step. Retries stay inside a stage (counted in `attempts`): routing -> routing is absent."""


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """An order as its events so far describe it; `last_event_id` is the causation for the next event."""

    order_id: str
    status: Status
    last_seq: int
    last_event_id: str
    order_type: str
    base_token: str
    quote_token: str
    side: Side
    amount_in: float
    slippage_bps: int
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    account_id: str = LOCAL_ACCOUNT
    attempts: int = 0
    venue: str | None = None
    quotes: tuple[Quote, ...] = ()
    route_reason: str | None = None
    client_order_id: str | None = None
    expected_price: float | None = None
    min_acceptable_price: float | None = None
    executed_price: float | None = None
    amount_out: float | None = None
    tx_hash: str | None = None
    failure_reason: str | None = None
    failure_stage: str | None = None
    limit_price: float | None = None
    max_price: float | None = None
    min_liquidity: float | None = None
    expires_at: datetime | None = None
    trigger_price: float | None = None
    trigger_venue: str | None = None
    triggered_at: datetime | None = None  # when the market event that fired the order occurred


def is_terminal(status: Status | str | None) -> bool:
    """Confirmed and failed orders accept no further event."""
    return status in TERMINAL


def can_transition(status: Status | None, event_type: str) -> bool:
    return (status, event_type) in TRANSITIONS


def apply(state: OrderState | None, event: Event) -> OrderState:
    """The order after `event`; raises a `LifecycleError` subclass and leaves `state` untouched otherwise."""
    if state is None:
        if event.seq != 1:
            raise SequenceGap(event, 1)
        if not isinstance(event, OrderRequested):
            raise IllegalTransition(None, event)
        d = event.data
        return OrderState(
            order_id=event.order_id,
            status="pending",
            last_seq=1,
            last_event_id=event.event_id,
            order_type=d.order_type,
            base_token=d.base_token,
            quote_token=d.quote_token,
            side=d.side,
            amount_in=d.amount_in,
            slippage_bps=d.slippage_bps,
            idempotency_key=d.idempotency_key,
            account_id=d.account_id,
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
            limit_price=d.limit_price,
            max_price=d.max_price,
            min_liquidity=d.min_liquidity,
            expires_at=d.expires_at,
        )
    if event.order_id != state.order_id:
        raise WrongOrder(event, state.order_id)
    if event.seq <= state.last_seq:
        raise DuplicateEvent(event, state.last_seq)
    if event.seq != state.last_seq + 1:
        raise SequenceGap(event, state.last_seq + 1)
    status = TRANSITIONS.get((state.status, event.type))
    if status is None or (isinstance(event, OrderOpened) and state.order_type == "market"):
        raise IllegalTransition(state.status, event)
    step: dict[str, Any] = {
        "status": status,
        "last_seq": event.seq,
        "last_event_id": event.event_id,
        "updated_at": event.occurred_at,
    }
    match event:
        case OrderOpened():
            return replace(state, **step)
        case OrderTriggered(data=t):
            return replace(
                state, trigger_price=t.price, trigger_venue=t.venue, triggered_at=t.market_at, **step
            )
        case OrderExpired() | OrderCancelled():
            return replace(state, **step)
        case OrderCancelRefused():
            return replace(state, **step)
        case OrderRouting(data=r):
            return replace(state, attempts=r.attempt, **step)
        case OrderBuilding(data=b):
            return replace(
                state,
                venue=b.selected_venue,
                quotes=tuple(b.quotes),
                route_reason=b.reason,
                attempts=b.attempts,
                **step,
            )
        case OrderSubmitted(data=s):
            return replace(
                state,
                venue=s.venue,
                client_order_id=s.client_order_id,
                expected_price=s.expected_price,
                min_acceptable_price=s.min_acceptable_price,
                **step,
            )
        case OrderConfirmed(data=c):
            return replace(
                state,
                venue=c.venue,
                client_order_id=c.client_order_id,
                tx_hash=c.tx_hash,
                executed_price=c.executed_price,
                amount_out=c.amount_out,
                **step,
            )
        case OrderFailed(data=f):
            return replace(
                state,
                failure_reason=f.reason,
                failure_stage=f.stage,
                attempts=f.attempts,
                venue=f.venue or state.venue,
                client_order_id=f.client_order_id or state.client_order_id,
                **step,
            )
    raise IllegalTransition(state.status, event)  # an Event subclass outside the contract


def fold(events: Iterable[Event], state: OrderState | None = None) -> OrderState | None:
    """Apply `events` in order: the state a replay of one order's stream arrives at."""
    for event in events:
        state = apply(state, event)
    return state


E = TypeVar("E", bound=Event)


def next_event(
    state: OrderState,
    kind: type[E],
    data: Payload | Mapping[str, Any],
    *,
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> E:
    """Build the order's next event (seq last+1, caused by the last event unless told otherwise).

    Raises `IllegalTransition` if `kind` may not follow the current status (and `EventValidationError` for
    bad data), so a service cannot emit an event its own consumers would reject.
    """
    event = new_event(
        kind,
        order_id=state.order_id,
        seq=state.last_seq + 1,
        data=data,
        causation_id=causation_id or state.last_event_id,
        occurred_at=occurred_at,
    )
    if not can_transition(state.status, event.type):
        raise IllegalTransition(state.status, event)
    return event
