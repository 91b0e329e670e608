"""The owner's answers to the requests about an order, as pure steps: triggers, cancels and expiries.

The router partition that owns an order is its only writer; the trigger engine and the API only *ask*, on
the intake topic keyed by the order id (`events.commands`). The owner reads one order's requests in one
sequence and applies each to what the order is *then*, so a cancel racing a trigger ends in exactly one of
the two, whichever the owner read first:

- a trigger for an `open` order: `triggered` and `routing` (then quotes, like a market order, only on the
  venues the trigger named); with a sniper guard's refusal: `failed` at stage `trigger`. For an order no
  longer open (triggered before, a repeat after a restart of the engine, cancelled, expired): nothing; for
  one read after its `expires_at` (before the expiry timer ran): `expired`.
- a cancel from the order's account: `cancelled` while nothing was sent to a venue (pending, open,
  triggered, routing, building); once `submitted`, `OrderCancelRefused` (reason `submitted`), once; for a
  finished order, or another account's: nothing.
- an expiry (the owner's own timer): `expired` for an order still `open` at its `expires_at`.

No I/O and no clock of its own: the caller passes `now`, and writes what the steps return.
"""

from __future__ import annotations

from datetime import UTC, datetime

from msgspec.structs import replace

from events.commands import AnyCommand, OrderCancelRequested, OrderTriggerRequested
from events.lifecycle import CANCELLABLE
from events.payloads import OrderCancelledData, OrderCancelRefusedData, OrderExpiredData, OrderRoutingData
from events.resting import RestingOrder
from events.types import (
    OrderCancelled,
    OrderCancelRefused,
    OrderExpired,
    OrderRouting,
    OrderTriggered,
)
from services.router.flow import Step, Tracked, advance, fail

NOT_TRIGGERED = "expired: the market did not reach the order's condition before expires_at"


def respond(tracked: Tracked | None, command: AnyCommand, now: datetime) -> Step | None:
    """The order's answer to `command`; None when there is nothing to write (see the module docstring)."""
    if tracked is None:
        return None
    if isinstance(command, OrderTriggerRequested):
        return trigger(tracked, command, now)
    return cancel(tracked, command, now)


def trigger(tracked: Tracked, command: OrderTriggerRequested, now: datetime) -> Step | None:
    if tracked.status != "open":
        return None
    if tracked.expires_at is not None and now.timestamp() >= tracked.expires_at:
        return expire(tracked, now)  # the request came after the order's end: it expires, it does not fire
    if command.data.refusal is not None:
        return fail(tracked, command.data.refusal, "trigger", now)
    fired = command.data.triggered
    event, after = advance(tracked, OrderTriggered, fired, now)
    routing, after = advance(after, OrderRouting, OrderRoutingData(attempt=1), now)
    after = replace(after, attempts=1, retry_at=None, venues=tuple(fired.venues))
    return Step([event, routing], after, rests=False)


def cancel(tracked: Tracked, command: OrderCancelRequested, now: datetime) -> Step | None:
    if command.data.account_id != tracked.request.account_id:
        return None  # not the order's account: as if the order did not exist (the API checked it already)
    if tracked.status in CANCELLABLE:
        data = OrderCancelledData(
            request_id=command.command_id, requested_at=command.issued_at, from_status=tracked.status
        )
        was_resting = tracked.phase == "resting"
        event, after = advance(tracked, OrderCancelled, data, now)
        return Step([event], replace(after, retry_at=None), rests=False if was_resting else None)
    if tracked.status == "submitted" and not tracked.cancel_refused:
        refused = OrderCancelRefusedData(
            request_id=command.command_id,
            requested_at=command.issued_at,
            reason="submitted",
            status=tracked.status,
        )
        refusal, after = advance(tracked, OrderCancelRefused, refused, now)
        return Step([refusal], replace(after, cancel_refused=True))
    return None


def expire(tracked: Tracked, now: datetime) -> Step | None:
    """`expired` for an order still resting at its `expires_at`; None otherwise."""
    expires = tracked.expires_at
    if tracked.status != "open" or expires is None or now.timestamp() < expires:
        return None
    data = OrderExpiredData(expires_at=datetime.fromtimestamp(expires, UTC), reason=NOT_TRIGGERED)
    event, after = advance(tracked, OrderExpired, data, now)
    return Step([event], after, rests=False)


def resting_record(tracked: Tracked, opened_at: datetime) -> RestingOrder:
    """The order's record on the resting topic, for the trigger engine."""
    r = tracked.request
    bound = r.price_bound
    if r.order_type == "market" or bound is None or r.expires_at is None:
        raise ValueError(f"order {tracked.order_id} ({r.order_type}) does not rest")
    return RestingOrder(
        order_id=tracked.order_id,
        order_type=r.order_type,
        base_token=r.base_token,
        quote_token=r.quote_token,
        side=r.side,
        amount_in=r.amount_in,
        bound=bound,
        expires_at=r.expires_at,
        opened_at=opened_at,
        min_liquidity=r.min_liquidity,
    )
