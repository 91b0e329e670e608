"""One order's failure stays that order's: through the fake broker, an order whose own processing raises
(beyond the request bounds, a venue's quote that breaks the step, a fill the contract cannot record, a
submit that raises) ends `failed` with a reason, or by its deadline, and the router goes on with the
others without stopping."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest

from events.lifecycle import fold
from events.types import OrderRequested
from services.router.containment import REASON
from services.router.flow import OUT_OF_BOUNDS
from services.venue.interface import Side, SubmitReceipt, SwapStatus, VenueQuote
from tests.router_fakes import FakeBroker, FaultyVenue, until
from tests.samples import limit_request, order_request
from tests.unit.test_router_core_fakes import FAST, TOPICS, counter, ended, record, running, venues

TWISTED = 7.77  # the amount that makes the twisted venue misbehave


class TwistedVenue(FaultyVenue):
    """A venue that answers orders of `TWISTED` with what it is told to: a quote, a fill, a submit error."""

    def __init__(self, inner: FaultyVenue) -> None:
        super().__init__(inner.inner)
        self.quote_as: Callable[[VenueQuote], VenueQuote] | None = None
        self.submit_raises: BaseException | None = None
        self.fill_as: Callable[[SwapStatus], SwapStatus] | None = None
        self.twisted_ids: set[str] = set()
        self.submits = 0

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        answer = await super().quote(base, quote, side, amount_in)
        return self.quote_as(answer) if self.quote_as and amount_in == TWISTED else answer

    async def submit(
        self,
        client_order_id: str,
        base: str,
        quote: str,
        side: Side,
        amount_in: float,
        limit_price: float,
        valid_until: datetime | None = None,
    ) -> SubmitReceipt:
        if amount_in == TWISTED:
            self.twisted_ids.add(client_order_id)
            if self.submit_raises is not None:
                self.submits += 1
                raise self.submit_raises
        return await super().submit(client_order_id, base, quote, side, amount_in, limit_price, valid_until)

    def on_settled(self, callback: Callable[[SwapStatus], None]) -> Callable[[], None]:
        def forward(status: SwapStatus) -> None:
            twist = self.fill_as if status.client_order_id in self.twisted_ids else None
            callback(twist(status) if twist else status)

        return super().on_settled(forward)


@pytest.fixture
async def twisted() -> AsyncIterator[dict[str, TwistedVenue]]:
    made = {name: TwistedVenue(v) for name, v in venues().items()}
    yield made
    for venue in made.values():
        await venue.aclose()


def last(broker: FakeBroker, order: OrderRequested) -> tuple[str, str]:
    """The order's final status and, for a failed one, its reason; checked to be one legal lifecycle."""
    events = broker.events(TOPICS.events)[order.order_id]
    state = fold(events)
    assert state is not None
    reason = events[-1].data.reason if events[-1].type == "OrderFailed" else ""  # type: ignore[union-attr]
    return state.status, reason


async def test_an_order_beyond_the_bounds_on_the_log_fails_and_the_next_confirms(
    twisted: dict[str, TwistedVenue],
) -> None:
    broker = FakeBroker()
    huge, huge_limit, fine = order_request(amount=1e308), limit_request(amount=1e306), order_request()
    async with running(broker, twisted) as core:
        await core.handle([record(huge, 0, 0), record(huge_limit, 0, 1), record(fine, 0, 2)])
        await until(lambda: ended(broker, huge, huge_limit, fine), 10, "every order ends")
        assert not core.crashed.done()
    for order in (huge, huge_limit):
        status, reason = last(broker, order)
        assert status == "failed" and reason.startswith(OUT_OF_BOUNDS) and "amountIn" in reason, reason
        assert [e.seq for e in broker.events(TOPICS.events)[order.order_id]] == [1, 2]
    assert last(broker, fine) == ("confirmed", "")
    assert not any(v.inner.ledger_count(huge.order_id) for v in twisted.values()), "no venue was asked"


async def test_an_order_too_big_for_every_pool_fails_at_once_with_the_venues_reasons(
    twisted: dict[str, TwistedVenue],
) -> None:
    # Within the request bounds, over every pool's price-impact bound: both venues refuse it at the quote,
    # so asking again cannot help; the order fails on its first attempt instead of after two back-offs.
    broker = FakeBroker()
    whale, fine = order_request("sell", amount=1e9), order_request()
    options = dataclasses.replace(FAST, backoff=(60.0, 60.0))  # a retry would not end within the test
    async with running(broker, twisted, options) as core:
        await core.handle([record(whale, 0, 0), record(fine, 0, 1)])
        await until(lambda: ended(broker, whale, fine), 10, "both orders end")
    status, reason = last(broker, whale)
    assert status == "failed" and reason.startswith("every venue refused it: "), reason
    assert "raydium: " in reason and "meteora: " in reason and "limit" in reason, reason
    assert broker.events(TOPICS.events)[whale.order_id][-1].data.attempts == 1  # type: ignore[union-attr]
    assert last(broker, fine) == ("confirmed", "")


async def test_a_quote_that_breaks_the_step_fails_that_order_only(twisted: dict[str, TwistedVenue]) -> None:
    broker = FakeBroker()
    for venue in twisted.values():  # finite, but a buy's slippage bound overflows: OrderSubmitted is invalid
        venue.quote_as = lambda q: dataclasses.replace(q, price=1.79e308)
    broken, fine = order_request("buy", amount=TWISTED), order_request("buy", amount=10.0)
    before = counter("orders_contained", stage="routing")
    async with running(broker, twisted) as core:
        await core.handle([record(broken, 1, 0), record(fine, 1, 1)])
        await until(lambda: ended(broker, broken, fine), 10, "both orders end")
        assert not core.crashed.done()
    status, reason = last(broker, broken)
    assert status == "failed" and reason.startswith(REASON) and "OrderSubmitted" in reason, reason
    assert last(broker, fine)[0] == "confirmed"
    assert counter("orders_contained", stage="routing") == before + 1


async def test_an_unusable_quote_counts_as_that_venues_failure(twisted: dict[str, TwistedVenue]) -> None:
    broker = FakeBroker()
    twisted["raydium"].quote_as = lambda q: dataclasses.replace(q, price=float("inf"))
    twisted["meteora"].quote_as = lambda q: dataclasses.replace(q, amount_out=None)  # type: ignore[arg-type]
    options = dataclasses.replace(FAST, backoff=(0.01, 0.01))
    mixed = order_request(amount=TWISTED)
    async with running(broker, twisted, options) as core:
        await core.handle([record(mixed, 2, 0)])
        await until(lambda: ended(broker, mixed), 10, "the order ends")
        assert not core.crashed.done()
    status, reason = last(broker, mixed)
    assert status == "failed" and reason.startswith("no venue quoted after 3 attempts"), reason
    assert (
        "raydium: unusable quote (price inf)" in reason
        and "meteora: unusable quote (amount_out None)" in reason
    )


async def test_one_venues_unusable_quote_leaves_the_other(twisted: dict[str, TwistedVenue]) -> None:
    broker = FakeBroker()
    twisted["raydium"].quote_as = lambda q: dataclasses.replace(q, price=float("nan"))
    order = order_request(amount=TWISTED)
    async with running(broker, twisted) as core:
        await core.handle([record(order, 0, 0)])
        await until(lambda: ended(broker, order), 10, "the order ends")
    events = broker.events(TOPICS.events)[order.order_id]
    assert last(broker, order)[0] == "confirmed"
    assert [q.venue for q in events[2].data.quotes] == ["meteora"]  # type: ignore[union-attr]


async def test_a_fill_the_contract_cannot_record_fails_the_order(twisted: dict[str, TwistedVenue]) -> None:
    broker = FakeBroker()
    for venue in twisted.values():
        venue.fill_as = lambda s: dataclasses.replace(s, amount_out=float("inf"))
    broken, fine = order_request(amount=TWISTED), order_request()
    async with running(broker, twisted) as core:
        await core.handle([record(broken, 0, 0), record(fine, 0, 1)])
        await until(lambda: ended(broker, broken, fine), 10, "both orders end")
        assert not core.crashed.done()
    status, reason = last(broker, broken)
    assert status == "failed" and reason.startswith(REASON) and "OrderConfirmed" in reason, reason
    assert last(broker, fine)[0] == "confirmed"


async def test_a_submit_that_raises_is_retried_then_ends_by_its_deadline(
    twisted: dict[str, TwistedVenue],
) -> None:
    broker = FakeBroker()
    for venue in twisted.values():
        venue.submit_raises = ZeroDivisionError("float division by zero")
    options = dataclasses.replace(FAST, landing_deadline_s=0.5, status_grace_s=0.1)
    broken, fine = order_request(amount=TWISTED), order_request()
    async with running(broker, twisted, options) as core:
        await core.handle([record(broken, 0, 0), record(fine, 0, 1)])
        await until(lambda: ended(broker, broken, fine), 10, "both orders end")
        assert not core.crashed.done()
    status, reason = last(broker, broken)
    assert status == "failed" and reason.startswith("expired"), reason
    assert sum(v.submits for v in twisted.values()) >= 2, "retried like a lost reply, not given up"
    assert last(broker, fine)[0] == "confirmed"
