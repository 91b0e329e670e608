"""RouterCore against the real broker with in-process venues, driven batch by batch (no Faust): the cases
that need a venue to misbehave in one precise way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced

from events.codec import encode
from events.topics import Topics
from services.config import Settings
from services.router.core import RouterCore, RouterOptions
from services.router.worker import Record
from services.venue.config import VENUE_SPECS
from services.venue.interface import Side, SwapStatus, VenueQuote
from services.venue.simulator import SimulatedVenue
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.samples import order_request

pytestmark = pytest.mark.integration

TOKENS = ("SOL", "USDC", "ETH", "USDT")


class HangingQuotes(SimulatedVenue):
    """A venue whose quotes never come back (a stuck RPC node)."""

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def core(infra: Settings, topics: Topics) -> AsyncIterator[RouterCore]:
    venues = {
        "raydium": HangingQuotes("raydium", VENUE_SPECS["raydium"], TOKENS, seed=1, execution_latency_s=0.0),
        "meteora": SimulatedVenue("meteora", VENUE_SPECS["meteora"], TOKENS, seed=1, execution_latency_s=0.0),
    }
    for venue in venues.values():
        venue.start()
    router = RouterCore(
        infra.bootstrap_servers,
        topics,
        topics.router_state,
        f"{topics.requests}.group",
        venues,
        RouterOptions(quote_timeout_s=0.3),
    )
    for venue in venues.values():
        venue.on_settled(router.on_settlement)
    await router.start()
    await router.assign({0, 1, 2})
    yield router
    await router.stop()
    for venue in venues.values():
        await venue.aclose()


async def test_one_venue_hanging_the_other_wins_after_the_quote_timeout(
    core: RouterCore, infra: Settings, topics: Topics
) -> None:
    order = order_request("sell")
    await core.handle([Record(partition=0, offset=0, value=encode(order), key=order.order_id.encode())])
    async with LogReader(infra.bootstrap_servers, topics.events) as log:
        await log.wait_terminal([order.order_id], 30)
        events = log.by_order[order.order_id]
        assert_lifecycle(events)
        building = events[2].data
        assert building.selected_venue == "meteora"
        assert [q.venue for q in building.quotes] == ["meteora"]
        assert "raydium unavailable" in building.reason
        assert events[-1].type == "OrderConfirmed"


async def test_a_restarted_core_resumes_submitted_orders_from_the_state_topic(
    core: RouterCore, infra: Settings, topics: Topics
) -> None:
    order = order_request("buy", amount=200.0)
    meteora = core.venues["meteora"]
    assert isinstance(meteora, SimulatedVenue)
    meteora.execution_latency_s = (3600.0, 3600.0)  # it will not settle while this router runs
    await core.handle([Record(partition=1, offset=0, value=encode(order), key=order.order_id.encode())])
    async with LogReader(infra.bootstrap_servers, topics.events) as log:
        await log.wait_for(
            lambda r: [e.type for e in r.by_order.get(order.order_id, [])][-1:] == ["OrderSubmitted"],
            30,
            "the order submitted",
        )
    # A second router takes the partition over (the first one is fenced by the new transactional producer),
    # restores the order from the state topic and settles it once the venue fills.
    successor = RouterCore(
        infra.bootstrap_servers, topics, topics.router_state, f"{topics.requests}.group", core.venues, None
    )
    meteora.on_settled(successor.on_settlement)
    await successor.start()
    await successor.assign({1})
    try:
        assert order.order_id in successor.workers[1].active
        meteora._settle(order.order_id)  # the chain confirms the swap now
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await log.wait_terminal([order.order_id], 30)
            await log.settle(0.5)
            assert_lifecycle(log.by_order[order.order_id])

            # The old router is a zombie now: its next transaction on partition 1 is fenced, it stops, and
            # nothing it tried to write is visible.
            late = order_request()
            zombie = asyncio.create_task(
                core.handle([Record(partition=1, offset=1, value=encode(late), key=late.order_id.encode())])
            )
            failure = await asyncio.wait_for(asyncio.shield(core.crashed), 30)
            zombie.cancel()
            assert isinstance(failure, ProducerFenced | InvalidProducerEpoch), repr(failure)
            await log.settle(1.0)
            assert late.order_id not in log.by_order
    finally:
        await successor.stop()


async def test_a_swap_reported_twice_at_once_ends_the_order_once(
    core: RouterCore, infra: Settings, topics: Topics
) -> None:
    order = order_request("sell")
    meteora = core.venues["meteora"]
    assert isinstance(meteora, SimulatedVenue)
    meteora.execution_latency_s = (3600.0, 3600.0)
    await core.handle([Record(partition=2, offset=0, value=encode(order), key=order.order_id.encode())])
    async with LogReader(infra.bootstrap_servers, topics.events) as log:
        await log.wait_for(
            lambda r: [e.type for e in r.by_order.get(order.order_id, [])][-1:] == ["OrderSubmitted"],
            30,
            "the order submitted",
        )
        fill = SwapStatus("meteora", order.order_id, "confirmed", "tx-1", 150.0, 225.0, None, None)
        core.on_settlement(fill)  # from the feed
        core.on_settlement(fill)  # and from a reconciliation, in the same settlement batch
        await log.wait_terminal([order.order_id], 30)
        await log.settle(1.0)
        assert_lifecycle(log.by_order[order.order_id])
