"""At most one lifecycle and one swap per order id, forever, on the real broker and PostgreSQL: a router
that has forgotten an order (no memory of finished orders; then restarted) is sent the same request again,
and the same id with another body, while the other venue has become the better one — a second lifecycle
would route there and execute a second swap. The durable record of admitted ids refuses them."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from events.topics import Topics
from events.types import OrderRequested
from services.config import Settings
from services.router.admission import Candidate, PgAdmissions
from services.router.options import RouterOptions
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.integration.router_harness import close_venues, intake, running, sim_venues
from tests.router_fakes import FaultyVenue
from tests.samples import order_request
from tests.waiting import until

pytestmark = pytest.mark.integration

FORGETFUL = RouterOptions(quote_timeout_s=1.0, memory_orders=0, reconcile_every_s=0.1)


async def make_the_other_venue_better(
    venues: dict[str, FaultyVenue], order: OrderRequested, winner: str
) -> str:
    """Trade on the winner's pool against the order's side until the other venue quotes it better."""
    other = next(name for name in venues if name != winner)
    req = order.data
    sell = req.side == "sell"
    for _ in range(30):
        mine = await venues[winner].inner.quote(req.base_token, req.quote_token, req.side, req.amount_in)
        theirs = await venues[other].inner.quote(req.base_token, req.quote_token, req.side, req.amount_in)
        if (theirs.price > mine.price) if sell else (theirs.price < mine.price):
            return other
        whale = str(uuid.uuid4())
        size = req.amount_in * 500
        limit = 1e-9 if sell else 1e12
        await venues[winner].inner.submit(whale, req.base_token, req.quote_token, req.side, size, limit)
        await venues[winner].inner.wait_settled(whale)
    raise AssertionError(f"{other} never became better than {winner}")


async def test_a_forgotten_order_sent_again_starts_no_second_lifecycle_and_no_second_swap(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues()
    order = order_request("sell", amount=1.5)
    other_body = order_request("buy", amount=250.0, order_id=order.order_id)
    try:
        async with (
            running(infra, topics, venues, FORGETFUL, PgAdmissions(infra.database_url)) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(await intake(infra, topics, [(0, order)]))
            await log.wait_terminal([order.order_id], 30)
            first = log.by_order[order.order_id][-1]
            assert first.type == "OrderConfirmed"
            other = await make_the_other_venue_better(venues, order, first.data.venue)
            # It forgets (memory_orders=0) once the transaction that ended it has committed and been
            # recorded, a moment after the terminal event is readable on the log.
            await until(
                lambda: not core.workers[0].memory.known(order.order_id), 10, "the router to forget it"
            )

            await core.handle(await intake(infra, topics, [(0, order)]))  # the same request again
            await core.handle(await intake(infra, topics, [(0, other_body)]))  # the same id, another body
            # An order like the first, placed now, does go to the other venue: a second lifecycle would have.
            twin = order_request("sell", amount=1.5)
            await core.handle(await intake(infra, topics, [(0, twin)]))
            await log.wait_terminal([twin.order_id], 30)
            assert log.by_order[twin.order_id][2].data.selected_venue == other

        # Restarted, with nothing in memory: the state topic's finished orders are not kept either.
        async with (
            running(infra, topics, venues, FORGETFUL, PgAdmissions(infra.database_url)) as successor,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            assert not successor.workers[0].memory.known(order.order_id)
            last = order_request()
            await successor.handle(await intake(infra, topics, [(0, order), (0, other_body), (0, last)]))
            await log.wait_terminal([last.order_id], 30)
            await log.settle(1.0)
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            assert len(events) == 5 and events[0] == order
        entries = {name: v.inner.ledger_count(order.order_id) for name, v in venues.items()}
        assert sum(entries.values()) == 1, entries
    finally:
        await close_venues(venues)


async def test_a_record_read_again_after_an_aborted_transaction_is_admitted_again(
    infra: Settings, topics: Topics
) -> None:
    """The same (partition, offset) already in the durable record is this very request, not a duplicate."""
    venues = sim_venues()
    order = order_request()
    records = await intake(infra, topics, [(1, order)])
    store = PgAdmissions(infra.database_url)
    try:
        await store.prepare()
        # A first router recorded the id, then died before its Kafka transaction committed.
        first_read = Candidate(order.order_id, 1, records[0].offset)
        assert await store.admit(topics.requests, [first_read]) == {first_read}
        options = dataclasses.replace(FORGETFUL, memory_orders=10)
        async with (
            running(infra, topics, venues, options, PgAdmissions(infra.database_url)) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(records)
            await log.wait_terminal([order.order_id], 30)
            assert_lifecycle(log.by_order[order.order_id])
    finally:
        await store.aclose()
        await close_venues(venues)
