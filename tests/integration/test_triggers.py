"""The trigger engine with a router core on the real broker (in process, no Faust): market data the test
publishes fires resting orders at the first crossing event and not before; the engine's requests go through
the intake to the order's owner, so a cancel racing a trigger ends in exactly one of the two, a repeat after
a restart changes nothing, and an engine that dies between a market event and its request fires the order
once after it restarts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from events.envelope import Event
from events.lifecycle import fold
from events.topics import Topics
from events.types import OrderRequested, OrderTriggered
from services.config import Settings
from services.router.core import RouterCore
from services.router.options import RouterOptions
from services.triggers.engine import TriggerEngine
from services.triggers.offsets import clamp
from tests.e2e.harness import LogReader
from tests.integration.router_harness import close_venues, running, sim_venues
from tests.integration.trigger_harness import engine_running, publish, pumping, sol_usdc
from tests.router_fakes import FaultyVenue, until
from tests.samples import cancel_command, limit_request, sniper_request

pytestmark = pytest.mark.integration

OPTIONS = RouterOptions(
    quote_timeout_s=1.0, submit_retry_s=0.05, reconcile_after_s=1.0, reconcile_every_s=0.2
)


@pytest.fixture
async def venues() -> AsyncIterator[dict[str, FaultyVenue]]:
    made = sim_venues(latency=0.2)
    yield made
    await close_venues(made)


@contextlib.asynccontextmanager
async def router(
    infra: Settings, topics: Topics, venues: dict[str, FaultyVenue]
) -> AsyncIterator[RouterCore]:
    """A router core fed by the intake topic as Faust would (every partition, in order)."""
    async with (
        running(infra, topics, venues, OPTIONS) as core,
        pumping(infra.bootstrap_servers, topics.requests, core.handle),
    ):
        yield core


def of(log: LogReader, order: OrderRequested) -> list[Event]:
    return log.by_order.get(order.order_id, [])


def status(log: LogReader, order: OrderRequested) -> str | None:
    state = fold(of(log, order))
    return None if state is None else state.status


async def resting(engine: TriggerEngine, *orders: OrderRequested) -> None:
    await until(
        lambda: all(o.order_id in engine.book.orders for o in orders), 20, "the engine's book has them"
    )


def ignored() -> float:
    return REGISTRY.get_sample_value("oee_router_commands_ignored_total") or 0.0


async def test_limit_orders_fire_at_the_first_crossing_market_event_and_not_before(
    infra: Settings, topics: Topics, venues: dict[str, FaultyVenue]
) -> None:
    buy = limit_request("buy", limit=148.0, amount=150.0)  # spend 150 USDC on SOL at 148 or less
    sell = limit_request("sell", limit=152.0, amount=1.0)  # sell 1 SOL at 152 or more
    async with router(infra, topics, venues), engine_running(infra.bootstrap_servers, topics) as engine:
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await publish(infra.bootstrap_servers, topics, [buy, sell])
            await resting(engine, buy, sell)
            ticks = [sol_usdc(p) for p in (150.0, 149.0, 148.6, 147.5, 151.0, 152.0, 152.5, 146.0, 153.0)]
            await publish(infra.bootstrap_servers, topics, ticks)
            await log.wait_for(
                lambda lg: all(status(lg, o) in ("confirmed", "failed") for o in (buy, sell)), 60, "both end"
            )
            await log.settle(1.0)
    # 148.6 mid is 148.97 for a buyer once the 25 bps fee is paid: the first to reach 148 is 147.5.
    fired_buy = [e for e in of(log, buy) if isinstance(e, OrderTriggered)]
    fired_sell = [e for e in of(log, sell) if isinstance(e, OrderTriggered)]
    assert [e.data.market_event_id for e in fired_buy] == [ticks[3].event_id], "once, at the first crossing"
    assert [e.data.market_event_id for e in fired_sell] == [ticks[6].event_id]  # 152 * 0.9975 < 152
    assert fired_buy[0].data.price <= 148.0 <= fired_buy[0].data.bound
    assert fired_sell[0].data.price >= 152.0 == fired_sell[0].data.bound
    for order in (buy, sell):
        submitted = next(e for e in of(log, order) if e.type == "OrderSubmitted")
        assert submitted.data.min_acceptable_price == order.data.limit_price  # type: ignore[attr-defined]
        end = of(log, order)[-1]
        if end.type == "OrderConfirmed":  # the simulated venues price SOL at ~150: the limit holds either way
            price = end.data.executed_price  # type: ignore[attr-defined]
            assert price <= 148.0 if order.data.side == "buy" else price >= 152.0
        else:
            assert end.data.reason.startswith("slippage exceeded")  # type: ignore[attr-defined]
    assert engine.book.orders == {}


async def test_an_engine_killed_between_an_event_and_its_request_fires_the_order_once_after_restart(
    infra: Settings, topics: Topics, venues: dict[str, FaultyVenue]
) -> None:
    """Two deaths: after evaluating a crossing event but before asking (nothing sent), and after asking
    but before the event counted as handled (sent again by the next engine: the owner ignores the repeat)."""
    unasked, asked = limit_request("sell", 151.0, 1.0), limit_request("sell", 151.5, 1.0)
    before = ignored()
    async with router(infra, topics, venues), LogReader(infra.bootstrap_servers, topics.events) as log:
        await publish(infra.bootstrap_servers, topics, [unasked, asked])
        async with engine_running(infra.bootstrap_servers, topics, feed=False) as doomed:
            await resting(doomed, unasked, asked)
            crossing = sol_usdc(155.0)
            await publish(infra.bootstrap_servers, topics, [crossing])
            fires = doomed.book.on_market(crossing)  # evaluated...
            assert {f.order.order_id for f in fires} == {unasked.order_id, asked.order_id}
            await doomed.send([f for f in fires if f.order.order_id == asked.order_id])  # ...one asked
            assert doomed.processed == {}, "...and the process dies before the event counts as handled"
        await log.wait_for(lambda lg: status(lg, asked) in ("confirmed", "failed"), 60, "the asked one ends")
        async with engine_running(infra.bootstrap_servers, topics) as successor:
            await log.wait_for(
                lambda lg: status(lg, unasked) in ("confirmed", "failed"), 60, "the other ends"
            )
            assert successor.book.orders == {}
        await log.settle(1.0)
    for order in (unasked, asked):
        triggered = [e for e in of(log, order) if isinstance(e, OrderTriggered)]
        assert [e.data.market_event_id for e in triggered] == [crossing.event_id], order.order_id
    # The successor restored `asked` too when the owner had not taken it off the book yet, or not: either
    # way a second request for it changes nothing.
    assert ignored() >= before


@pytest.fixture
async def slow_venues() -> AsyncIterator[dict[str, FaultyVenue]]:
    # Swaps settle 3 s after their submit: every cancel below reaches its order's owner before its order
    # could end, so a cancel that loses the race to the trigger is refused (not ignored as too late).
    made = sim_venues(latency=3.0)
    yield made
    await close_venues(made)


async def test_a_cancel_racing_a_trigger_ends_in_exactly_one_of_the_two(
    infra: Settings, topics: Topics, slow_venues: dict[str, FaultyVenue]
) -> None:
    venues = slow_venues
    orders = [limit_request("sell", 151.0, 1.0) for _ in range(40)]
    async with router(infra, topics, venues), engine_running(infra.bootstrap_servers, topics) as engine:
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await publish(infra.bootstrap_servers, topics, orders)
            await resting(engine, *orders)
            crossing = sol_usdc(155.0)
            cancels = [cancel_command(o.order_id) for o in orders]
            # The cancels and the trigger requests race to the intake: half the cancels go first.
            await asyncio.gather(
                publish(infra.bootstrap_servers, topics, [crossing]),
                publish(infra.bootstrap_servers, topics, cancels[::2]),
            )
            await publish(infra.bootstrap_servers, topics, cancels[1::2])
            await log.wait_for(
                lambda lg: all(status(lg, o) in ("confirmed", "failed", "cancelled") for o in orders),
                90,
                "every order ends",
            )
            await log.settle(1.0)
    outcomes = {"cancelled": 0, "executed": 0}
    for order in orders:
        kinds = [e.type for e in of(log, order)]
        swaps = sum(v.inner.ledger_count(order.order_id) for v in venues.values())
        if "OrderCancelled" in kinds:
            assert "OrderSubmitted" not in kinds and swaps == 0, kinds
            outcomes["cancelled"] += 1
        else:
            assert "OrderSubmitted" in kinds and "OrderCancelRefused" in kinds and swaps == 1, kinds
            outcomes["executed"] += 1
        assert kinds.count("OrderTriggered") <= 1
    assert sum(outcomes.values()) == len(orders)


async def test_a_resting_order_expires_and_leaves_the_engines_book(
    infra: Settings, topics: Topics, venues: dict[str, FaultyVenue]
) -> None:
    order = limit_request("sell", 500.0, expires_in_s=2.0)
    async with router(infra, topics, venues), engine_running(infra.bootstrap_servers, topics) as engine:
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await publish(infra.bootstrap_servers, topics, [order])
            await resting(engine, order)
            await log.wait_for(lambda lg: status(lg, order) == "expired", 20, "the expiry")
            await until(lambda: order.order_id not in engine.book.orders, 10, "the book drops it")
            await publish(infra.bootstrap_servers, topics, [sol_usdc(600.0)])  # too late: nothing fires
            await log.settle(1.0)
    assert [e.type for e in of(log, order)] == ["OrderRequested", "OrderOpened", "OrderExpired"]


async def test_a_sniper_fires_on_its_listing_and_its_guards_refuse_a_thin_pool_or_a_high_price(
    infra: Settings, topics: Topics, venues: dict[str, FaultyVenue]
) -> None:
    ok = sniper_request("BONK", amount=500.0, max_price=1e-4, min_liquidity=50_000.0)
    thin = sniper_request("BONK", amount=500.0, max_price=1e-4, min_liquidity=500_000.0)
    dear = sniper_request("BONK", amount=500.0, max_price=1e-5, min_liquidity=50_000.0)
    async with router(infra, topics, venues), engine_running(infra.bootstrap_servers, topics) as engine:
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await publish(infra.bootstrap_servers, topics, [ok, thin, dear])
            await resting(engine, ok, thin, dear)
            meteora = venues["meteora"].inner
            changes: list = []
            off = meteora.on_market(changes.append)
            await meteora.list_pool("BONK", "USDC", 4e9, 100_000.0)  # the venue lists it...
            off()
            from events.market import PoolListed, new_market_event

            (change,) = changes
            listed = new_market_event(PoolListed, venue="meteora", pool=change.pool, cause="listing")
            await publish(infra.bootstrap_servers, topics, [listed])  # ...and its market data says so
            await log.wait_for(
                lambda lg: all(status(lg, o) in ("confirmed", "failed") for o in (ok, thin, dear)),
                60,
                "all end",
            )
    assert status(log, ok) == "confirmed"
    building = next(e for e in of(log, ok) if e.type == "OrderBuilding")
    assert [q.venue for q in building.data.quotes] == ["meteora"]  # type: ignore[attr-defined]
    confirmed = of(log, ok)[-1]
    assert confirmed.data.executed_price <= 1e-4  # type: ignore[attr-defined]
    for order, why in ((thin, "thin pool"), (dear, "above maxPrice")):
        failed = of(log, order)[-1]
        assert [e.type for e in of(log, order)] == ["OrderRequested", "OrderOpened", "OrderFailed"]
        assert failed.data.stage == "trigger" and why in failed.data.reason  # type: ignore[attr-defined]


def test_the_commit_gate_never_passes_an_event_not_handled() -> None:
    @dataclasses.dataclass(frozen=True)
    class TP:
        topic: str
        partition: int

    asked = {TP("m", 0): 10, TP("m", 1): 7, TP("m", 2): 3}
    assert clamp(asked, {("m", 0): 12, ("m", 1): 5}) == {TP("m", 0): 10, TP("m", 1): 5}
