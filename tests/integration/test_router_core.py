"""RouterCore against the real broker with in-process venues, driven batch by batch (no Faust): the cases
that need a venue to misbehave in one precise way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode
from events.topics import Topics
from services.config import Settings
from services.router import statestore
from services.router.core import RouterCore, RouterOptions
from services.router.worker import Record
from services.venue.config import VENUE_SPECS
from services.venue.interface import Side, SwapStatus, VenueQuote
from services.venue.simulator import SimulatedVenue
from tests.e2e.harness import LogReader, assert_lifecycle, committed_offsets
from tests.integration.test_ingress_api import read_topic
from tests.samples import order_request

pytestmark = pytest.mark.integration

TOKENS = ("SOL", "USDC", "ETH", "USDT")


class HangingQuotes(SimulatedVenue):
    """A venue whose quotes never come back (a stuck RPC node)."""

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def running_core(infra: Settings, topics: Topics, options: RouterOptions) -> AsyncIterator[RouterCore]:
    """A core owning partitions 0-2, over a hanging Raydium and a working Meteora of its own."""
    venues = {
        "raydium": HangingQuotes("raydium", VENUE_SPECS["raydium"], TOKENS, seed=1, execution_latency_s=0.0),
        "meteora": SimulatedVenue("meteora", VENUE_SPECS["meteora"], TOKENS, seed=1, execution_latency_s=0.0),
    }
    for venue in venues.values():
        venue.start()
    router = RouterCore(
        infra.bootstrap_servers, topics, topics.router_state, f"{topics.requests}.group", venues, options
    )
    for venue in venues.values():
        venue.on_settled(router.on_settlement)
    await router.start()
    await router.assign({0, 1, 2})
    try:
        yield router
    finally:
        await router.stop()
        for venue in venues.values():
            await venue.aclose()


@pytest.fixture
async def core(infra: Settings, topics: Topics) -> AsyncIterator[RouterCore]:
    async with running_core(infra, topics, RouterOptions(quote_timeout_s=0.3)) as router:
        yield router


async def append_to_intake(
    infra: Settings, topics: Topics, partition: int, items: list[tuple[bytes, bytes]]
) -> list[Record]:
    """Write (key, value) pairs to one intake partition; the records as the agent would hand them over."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(topics.requests, v, key=k, partition=partition) for k, v in items
        ]
    finally:
        await producer.stop()
    return [Record(partition, meta.offset, v, k) for meta, (k, v) in zip(sent, items, strict=True)]


async def group_offsets(infra: Settings, topics: Topics) -> dict[int, int]:
    """The intake offsets the router's consumer group has committed, by partition."""
    return await committed_offsets(infra.bootstrap_servers, f"{topics.requests}.group", topics.requests)


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
        meteora.settle_now(order.order_id)  # the chain confirms the swap now
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await log.wait_terminal([order.order_id], 30)
            await log.settle(0.5)
            assert_lifecycle(log.by_order[order.order_id])

            # The old router is a zombie now: its next transaction on partition 1 is fenced. It drops that
            # partition (another router owns it), keeps routing the others, and nothing it tried to write on
            # partition 1 is visible.
            late, other = order_request(), order_request()
            await asyncio.wait_for(
                core.handle([Record(partition=1, offset=1, value=encode(late), key=late.order_id.encode())]),
                30,
            )
            assert 1 not in core.workers and {0, 2} <= set(core.workers)
            assert not core.crashed.done()
            await core.handle(
                [Record(partition=0, offset=0, value=encode(other), key=other.order_id.encode())]
            )
            await log.wait_for(
                lambda r: [e.type for e in r.by_order.get(other.order_id, [])][-1:] == ["OrderSubmitted"],
                30,
                "another partition's order submitted by the zombie",
            )
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


async def test_a_successor_skips_what_was_processed_though_the_group_offset_lags(
    infra: Settings, topics: Topics
) -> None:
    """The group's offset follows the processed position only now and then; the exact position is in the
    state topic, so the records a restart reads again are skipped: no order twice, no dead letter twice."""
    lazy = RouterOptions(quote_timeout_s=0.3, offsets_every_s=3600.0)  # the group offset stays put
    order, later = order_request(), order_request()
    records = await append_to_intake(
        infra, topics, 2, [(b"garbage", b"not an event"), (order.order_id.encode(), encode(order))]
    )
    async with (
        running_core(infra, topics, lazy) as first,
        LogReader(infra.bootstrap_servers, topics.events) as log,
    ):
        await first.handle(records)
        await log.wait_terminal([order.order_id], 30)
    assert 2 not in await group_offsets(infra, topics)  # what a restart reads from: the records come again

    async with running_core(infra, topics, lazy) as successor:
        assert successor.workers[2].next_offset == 2
        await successor.handle(records)  # read again from the group's offset
        await successor.handle(
            await append_to_intake(infra, topics, 2, [(later.order_id.encode(), encode(later))])
        )
        async with LogReader(infra.bootstrap_servers, topics.events) as log:
            await log.wait_terminal([later.order_id], 30)
            await log.settle(1.0)
            assert_lifecycle(log.by_order[order.order_id])  # once: a second run would repeat seq 1..
            assert_lifecycle(log.by_order[later.order_id])
    assert len(await read_topic(infra, topics.dead_letters, partitions=1)) == 1


async def test_the_group_offset_catches_up_when_the_partition_goes_quiet(
    infra: Settings, topics: Topics
) -> None:
    """Lag tools read the group's offset: once the records stop, it reaches the processed position."""
    order = order_request()
    record = Record(partition=0, offset=0, value=encode(order), key=order.order_id.encode())
    async with running_core(infra, topics, RouterOptions(quote_timeout_s=0.3, offsets_every_s=0.2)) as core:
        await core.handle([record])
        async with asyncio.timeout(30):
            while (await group_offsets(infra, topics)).get(0) != 1:
                await asyncio.sleep(0.1)
        assert core.workers[0].offsets_pending is None


async def test_a_position_past_the_end_of_a_recreated_intake_is_dropped(
    infra: Settings, topics: Topics
) -> None:
    """A state topic that outlived its intake topic must not make the router skip the new topic's records."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.router_state, statestore.encode_position(500), key=statestore.POSITION_KEY, partition=1
        )
        await producer.send_and_wait(
            topics.router_state, statestore.encode_position(7), key=statestore.POSITION_KEY, partition=2
        )
    finally:
        await producer.stop()
    await append_to_intake(infra, topics, 2, [(b"k", b"v")] * 7)  # partition 2's intake does reach 7
    assert (
        await statestore.restore(infra.bootstrap_servers, topics.router_state, 1, topics.requests)
    ).next_offset == 0
    assert (
        await statestore.restore(infra.bootstrap_servers, topics.router_state, 2, topics.requests)
    ).next_offset == 7
