"""The router's per-order work as pure steps: given what it remembers of an order and what just happened
(a request, quotes or their absence, a settlement, a deadline that passed), the events to append and what
to remember next.

No I/O and no clock of its own: the caller passes `now`. The router core runs these steps inside Kafka
transactions; `Tracked` is what it writes to its state topic, so a restarted router resumes every order
exactly where the committed log left it.

One state machine: `Tracked.status` is the order's lifecycle status (`events.lifecycle`), and every event a
step builds is checked against the shared `TRANSITIONS` table before it exists, so the router cannot write
an event its own consumers would reject. What the router waits for next (`phase`) is derived from that
status, not kept beside it. Payloads are built as the contract's typed structs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import msgspec
from msgspec.structs import replace

from events.bounds import order_problem
from events.envelope import Status
from events.errors import IllegalTransition
from events.lifecycle import TRANSITIONS
from events.payloads import (
    OrderBuildingData,
    OrderConfirmedData,
    OrderFailedData,
    OrderOpenedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    Payload,
    Quote,
)
from events.types import (
    AnyEvent,
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
from services.router.routing import NoRoute, backoff_delays, choose_route, min_acceptable_price
from services.venue.interface import SwapStatus, VenueQuote

MAX_ATTEMPTS = 3
Phase = Literal["resting", "routing", "submitted", "done"]

PHASE: dict[Status, Phase] = {
    "pending": "routing",
    "open": "resting",
    "triggered": "routing",  # never at rest: triggered and routing are one step
    "routing": "routing",
    "building": "submitted",  # never at rest: building and submitted are one step
    "submitted": "submitted",
    "confirmed": "done",
    "failed": "done",
    "expired": "done",
    "cancelled": "done",
}
"""What the router waits for in each lifecycle status: the market (`resting`: a trigger, a cancel or its
expiry), quotes (`routing`), the venue (`submitted`), nothing."""

OUT_OF_BOUNDS = "out of bounds"
"""How the failure reason of an order beyond the request bounds starts (stage `routing`)."""

EXPIRED = "expired"
"""How an expired swap's failure reason starts (the stage stays `execution`)."""


class Tracked(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the router remembers of one order between steps (and across restarts, via its state topic).

    `status` is the lifecycle status after the order's last event (`last_seq`); `phase` derives from it:
    `resting` (a limit or sniper order waiting for the market until `expires_at`), `routing` (waiting for a
    quote retry at `retry_at`; only to `venues` when a trigger named them), `submitted` (the swap is with
    `venue`, waiting for its settlement; the venue refuses it after `valid_until`), `done` (terminal event
    written). `cancel_refused`: a cancel came after the submit and was refused; later ones are ignored.
    """

    order_id: str
    status: Status
    last_seq: int
    last_event_id: str
    request: OrderRequestedData
    attempts: int = 1
    retry_at: float | None = None  # epoch seconds
    venue: str | None = None
    limit_price: float | None = None
    valid_until: float | None = None  # epoch seconds; None: submitted before deadlines existed
    expires_at: float | None = None  # epoch seconds: a resting order's end
    venues: tuple[str, ...] | None = None  # the venues a triggered order may route to; None: every one
    cancel_refused: bool = False

    @property
    def phase(self) -> Phase:
        return PHASE[self.status]


@dataclass(frozen=True, slots=True)
class Expiry:
    """The swap of `order_id` cannot land any more: its deadline passed and the venue, asked after it, never
    executed it (or refused it as late). `why` says which, for the failure reason."""

    order_id: str
    why: str


Outcome = SwapStatus | Expiry
"""How a submitted swap ended, as the router learns it: the venue's settlement, or its expiry."""


class Step(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one step: events to append (in order) and the order's next memory. `rests`: the order
    starts resting (True: its record goes to the resting topic) or stops (False: a tombstone); None: no
    change."""

    events: list[AnyEvent]
    tracked: Tracked
    rests: bool | None = None

    @property
    def submit(self) -> bool:
        """True when this step handed the order to a venue: the caller submits after the commit."""
        return any(type(e) is OrderSubmitted for e in self.events)


def event_id(order_id: str, seq: int) -> str:
    """Deterministic id of the router's event `seq` of an order: a causation can be named without state,
    and a replayed step produces the very same event."""
    return str(uuid.uuid5(uuid.UUID(order_id), f"seq-{seq}"))


E = TypeVar(
    "E",
    OrderOpened,
    OrderTriggered,
    OrderRouting,
    OrderBuilding,
    OrderSubmitted,
    OrderConfirmed,
    OrderFailed,
    OrderExpired,
    OrderCancelled,
    OrderCancelRefused,
)


def advance(tracked: Tracked, kind: type[E], data: Payload, now: datetime) -> tuple[E, Tracked]:
    """The order's next event of `kind`, checked against the shared lifecycle table, and the memory after
    it. An illegal step raises `IllegalTransition` before anything is written."""
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
    status = TRANSITIONS.get((tracked.status, event.type))
    if status is None:
        raise IllegalTransition(tracked.status, event)
    return event, replace(tracked, status=status, last_seq=seq, last_event_id=event.event_id)


def accept(request: OrderRequested, now: datetime) -> Step:
    """A new order: the request's copy opens the order's stream (seq 1), then `routing` (seq 2), or, for a
    limit or sniper order, `open` (seq 2): it rests until the market fires it (`services.router.resting`).
    An order beyond the request bounds (`events.bounds`: on the log from before the ingress checked them)
    fails at once (seq 2): no venue is asked to price a swap of 1e308 tokens."""
    tracked = Tracked(
        order_id=request.order_id,
        status="pending",
        last_seq=request.seq,
        last_event_id=request.event_id,
        request=request.data,
    )
    problem = order_problem(request.data)
    if problem:
        failed = fail(tracked, f"{OUT_OF_BOUNDS}: {problem}", "routing", now)
        return Step([request, *failed.events], failed.tracked)
    if request.data.resting:
        opened, tracked = advance(tracked, OrderOpened, opened_data(request.data), now)
        expires = request.data.expires_at
        tracked = replace(tracked, expires_at=None if expires is None else expires.timestamp())
        return Step([request, opened], tracked, rests=True)
    routing, tracked = advance(tracked, OrderRouting, OrderRoutingData(attempt=1), now)
    return Step([request, routing], tracked)


def opened_data(request: OrderRequestedData) -> OrderOpenedData:
    if request.expires_at is None:
        raise ValueError(f"a {request.order_type} order without expires_at")
    return OrderOpenedData(
        trigger="listing" if request.order_type == "sniper" else "price",
        expires_at=request.expires_at,
        limit_price=request.limit_price,
        max_price=request.max_price,
        min_liquidity=request.min_liquidity,
    )


def quoted(
    tracked: Tracked,
    quotes: Sequence[VenueQuote],
    errors: Sequence[str],
    now: datetime,
    backoff: Sequence[float] | None = None,
    deadline_s: float = 60.0,
    *,
    refused: bool = False,
) -> Step:
    """Quotes are in (some venues may have failed). With at least one: `building` then `submitted`, the
    swap valid until `deadline_s` after now. With none: wait and retry (3 attempts, exponential backoff),
    then `failed` with every venue's reason; at once when every venue `refused` it (a rejection, such as a
    size over the pool's bound: asking again cannot help)."""
    side = tracked.request.side
    try:
        decision = choose_route(quotes, side)
    except NoRoute:
        if refused and errors:
            return fail(tracked, "every venue refused it: " + "; ".join(errors), "routing", now)
        delays = list(backoff_delays(MAX_ATTEMPTS) if backoff is None else backoff)
        if tracked.attempts <= len(delays) and tracked.attempts < MAX_ATTEMPTS:
            retry_at = now.timestamp() + delays[tracked.attempts - 1]
            return Step([], replace(tracked, attempts=tracked.attempts + 1, retry_at=retry_at))
        reason = f"no venue quoted after {tracked.attempts} attempts: " + ("; ".join(errors) or "no venues")
        return fail(tracked, reason, "routing", now)
    chosen = decision.quote
    building_data = OrderBuildingData(
        quotes=[_quote(q) for q in decision.quotes],
        selected_venue=decision.venue,
        reason=decision.reason,
        attempts=tracked.attempts,
    )
    building, tracked = advance(tracked, OrderBuilding, building_data, now)
    # A limit or sniper order's bound is its own price: it never executes worse than that.
    bound = tracked.request.price_bound
    limit = (
        bound if bound is not None else min_acceptable_price(chosen.price, side, tracked.request.slippage_bps)
    )
    valid_until = now.timestamp() + deadline_s
    submitted_data = OrderSubmittedData(
        venue=decision.venue,
        client_order_id=tracked.order_id,
        expected_price=chosen.price,
        min_acceptable_price=limit,
        slippage_bps=tracked.request.slippage_bps,
        valid_until=datetime.fromtimestamp(valid_until, UTC),
    )
    submitted, tracked = advance(tracked, OrderSubmitted, submitted_data, now)
    tracked = replace(
        tracked, venue=decision.venue, limit_price=limit, retry_at=None, valid_until=valid_until
    )
    return Step([building, submitted], tracked)


def settled(tracked: Tracked, status: SwapStatus, now: datetime) -> Step:
    """The venue settled the swap: `confirmed` with the fill, or `failed` with the venue's reason.
    A settlement for an order that is not waiting for one (a duplicate) changes nothing."""
    if tracked.phase != "submitted" or not status.terminal:
        return Step([], tracked)
    if status.state == "confirmed":
        if status.tx_hash is None or status.executed_price is None or status.amount_out is None:
            raise ValueError(f"{status.venue} reported {status.client_order_id} confirmed without its fill")
        data = OrderConfirmedData(
            venue=status.venue,
            tx_hash=status.tx_hash,
            executed_price=status.executed_price,
            amount_in=tracked.request.amount_in,
            amount_out=status.amount_out,
            client_order_id=status.client_order_id,
        )
        event, tracked = advance(tracked, OrderConfirmed, data, now)
        return Step([event], tracked)
    return fail(tracked, status.reason or "the venue reported the swap failed", "execution", now)


def concluded(tracked: Tracked, outcome: Outcome, now: datetime) -> Step:
    """The terminal step for `outcome`; nothing for an order not waiting for one."""
    if isinstance(outcome, Expiry):
        return expired(tracked, outcome.why, now)
    return settled(tracked, outcome, now)


def expired(tracked: Tracked, why: str, now: datetime) -> Step:
    """The swap cannot land any more: its deadline passed and the venue, asked after it, never executed it
    (or refused it as late). `failed` at stage `execution`, the reason starting with `expired`."""
    if tracked.phase != "submitted":
        return Step([], tracked)
    return fail(tracked, f"{EXPIRED}: {why}", "execution", now)


def fail(
    tracked: Tracked, reason: str, stage: Literal["routing", "execution", "trigger"], now: datetime
) -> Step:
    data = OrderFailedData(
        reason=reason[:4096],
        stage=stage,
        attempts=tracked.attempts if stage != "trigger" else 0,
        venue=tracked.venue,
        client_order_id=tracked.order_id if stage == "execution" else None,
    )
    was_resting = tracked.phase == "resting"
    event, tracked = advance(tracked, OrderFailed, data, now)
    return Step([event], replace(tracked, retry_at=None), rests=False if was_resting else None)


def _quote(q: VenueQuote) -> Quote:
    return Quote(
        venue=q.venue,
        price=q.price,
        fee_bps=q.fee_bps,
        amount_in=q.amount_in,
        amount_out=q.amount_out,
        price_impact_bps=q.price_impact_bps,
        quoted_at=q.quoted_at,
    )
