"""The router's per-order steps, without Kafka or a venue: each produces events the lifecycle accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.lifecycle import fold, is_terminal
from services.router import flow
from services.venue.interface import SwapStatus, VenueQuote
from tests.samples import order_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _quote(venue: str, price: float, side: str = "sell") -> VenueQuote:
    return VenueQuote(venue, "SOL", "USDC", side, price, 25.0, 1.5, 1.5 * price, 1.0, T0)  # type: ignore[arg-type]


def test_a_quoted_order_is_built_and_submitted_at_its_slippage_limit() -> None:
    request = order_request("sell", amount=1.5, slippage_bps=100)
    started = flow.accept(request, T0)
    assert [e.type for e in started.events] == ["OrderRequested", "OrderRouting"]
    step = flow.quoted(started.tracked, [_quote("raydium", 150.0), _quote("meteora", 151.0)], [], T0)
    assert [e.type for e in step.events] == ["OrderBuilding", "OrderSubmitted"]
    assert step.submit and step.tracked.phase == "submitted" and step.tracked.venue == "meteora"
    assert step.tracked.limit_price == 151.0 * 0.99
    state = fold([*started.events, *step.events])
    assert state.status == "submitted" and state.last_seq == 4


def test_no_quotes_backs_off_twice_then_fails_with_every_reason() -> None:
    tracked = flow.accept(order_request(), T0).tracked
    errors = ["raydium: down", "meteora: down"]
    first = flow.quoted(tracked, [], errors, T0, backoff=[1.0, 2.0])
    assert first.events == [] and first.tracked.attempts == 2
    assert first.tracked.retry_at == T0.timestamp() + 1.0
    second = flow.quoted(first.tracked, [], errors, T0 + timedelta(seconds=1), backoff=[1.0, 2.0])
    assert second.events == [] and second.tracked.retry_at == (T0 + timedelta(seconds=3)).timestamp()
    last = flow.quoted(second.tracked, [], errors, T0 + timedelta(seconds=3), backoff=[1.0, 2.0])
    assert [e.type for e in last.events] == ["OrderFailed"]
    failed = last.events[0].data
    assert (
        failed.stage == "routing" and failed.attempts == 3 and "raydium: down; meteora: down" in failed.reason
    )
    assert last.tracked.phase == "done"


def test_an_order_every_venue_refuses_fails_at_once_with_their_reasons() -> None:
    tracked = flow.accept(order_request(amount=1e9), T0).tracked
    errors = [
        "raydium: price impact 100 % is over the 15 % limit",
        "meteora: price impact 99 % is over the 15 % limit",
    ]
    step = flow.quoted(tracked, [], errors, T0, backoff=[1.0, 2.0], refused=True)
    assert [e.type for e in step.events] == ["OrderFailed"] and step.tracked.phase == "done"
    failed = step.events[0].data
    assert failed.stage == "routing" and failed.attempts == 1
    assert failed.reason == "every venue refused it: " + "; ".join(errors)


def test_a_retry_that_finds_a_quote_records_the_attempts() -> None:
    tracked = flow.accept(order_request(), T0).tracked
    waiting = flow.quoted(tracked, [], ["raydium: down"], T0, backoff=[1.0, 2.0]).tracked
    step = flow.quoted(waiting, [_quote("meteora", 150.0)], ["raydium: down"], T0)
    building = step.events[0].data
    assert building.attempts == 2 and "raydium unavailable" in building.reason


def test_settlements_end_the_order_once() -> None:
    request = order_request("buy", amount=300.0)
    started = flow.accept(request, T0)
    submitted = flow.quoted(started.tracked, [_quote("raydium", 150.0, "buy")], [], T0)
    fill = SwapStatus("raydium", request.order_id, "confirmed", "tx1", 150.2, 1.99, None, T0)
    done = flow.settled(submitted.tracked, fill, T0)
    assert [e.type for e in done.events] == ["OrderConfirmed"]
    assert done.events[0].data.tx_hash == "tx1" and done.events[0].data.amount_in == 300.0
    assert flow.settled(done.tracked, fill, T0).events == [], "a repeated settlement changes nothing"
    state = fold([*started.events, *submitted.events, *done.events])
    assert is_terminal(state.status) and state.last_seq == 5


def test_a_failed_swap_fails_the_order_at_execution_with_the_venue_reason() -> None:
    request = order_request()
    started = flow.accept(request, T0)
    submitted = flow.quoted(started.tracked, [_quote("raydium", 150.0)], [], T0)
    status = SwapStatus("raydium", request.order_id, "failed", "tx1", None, None, "slippage exceeded", T0)
    failed = flow.settled(submitted.tracked, status, T0).events[0]
    assert failed.type == "OrderFailed"
    assert failed.data.stage == "execution" and failed.data.reason == "slippage exceeded"
    assert failed.data.client_order_id == request.order_id


def test_router_event_ids_are_deterministic_and_chained() -> None:
    request = order_request()
    a = flow.accept(request, T0).events[1]
    b = flow.accept(request, T0 + timedelta(seconds=5)).events[1]
    assert a.event_id == b.event_id == flow.event_id(request.order_id, 2)
    assert a.causation_id == request.event_id
