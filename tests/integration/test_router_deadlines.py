"""Landing deadlines on the real broker, with the simulated venues behind faults: an uncertain swap is
looked up, never guessed, and ends by its deadline; reconciliation after a restart goes in chunks the venue
accepts, however many swaps wait."""

from __future__ import annotations

import dataclasses
import time

import pytest

from events.topics import Topics
from services.config import Settings
from services.router.options import RouterOptions
from services.venue.interface import MAX_STATUS_BATCH, SubmitExpired
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.integration.router_harness import close_venues, intake, running, sim_venues
from tests.router_fakes import FaultyVenue, until
from tests.samples import order_request

pytestmark = pytest.mark.integration

SHORT = RouterOptions(
    quote_timeout_s=1.0,
    landing_deadline_s=3.0,
    status_grace_s=0.5,
    submit_retry_s=0.1,
    submit_retry_cap_s=0.5,
    reconcile_after_s=1.0,
    reconcile_every_s=0.1,
)


def last_type(log: LogReader, order_id: str) -> str | None:
    events = log.by_order.get(order_id, [])
    return events[-1].type if events else None


def go_down(venues: dict[str, FaultyVenue], *, down: bool) -> None:
    for venue in venues.values():
        venue.down = down


async def test_a_lost_submit_with_the_venue_down_past_the_deadline_expires_and_cannot_land_late(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues()
    for venue in venues.values():
        venue.lose_submits = True  # the submit never reaches the venue, and the router cannot tell
    order = order_request()
    try:
        async with (
            running(infra, topics, venues, SHORT) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(await intake(infra, topics, [(0, order)]))
            await log.wait_for(lambda r: last_type(r, order.order_id) == "OrderSubmitted", 30, "submitted")
            go_down(venues, down=True)  # nobody can be asked what became of it
            submitted = log.by_order[order.order_id][3].data
            assert submitted.valid_until is not None
            deadline = submitted.valid_until.timestamp()
            await until(lambda: time.time() > deadline + SHORT.status_grace_s + 1.0, 10, "deadline + grace")
            await log.settle(0.3)
            assert last_type(log, order.order_id) == "OrderSubmitted", (
                "never guessed while it cannot be asked"
            )
            go_down(venues, down=False)
            await log.wait_terminal([order.order_id], 30)
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            failed = events[-1].data
            assert events[-1].type == "OrderFailed" and failed.stage == "execution"
            assert failed.reason.startswith("expired") and "valid_until" in failed.reason
        assert sum(v.inner.ledger_count(order.order_id) for v in venues.values()) == 0
        req, venue = order.data, venues[submitted.venue].inner
        with pytest.raises(SubmitExpired):  # the late swap is refused: it can never execute now
            await venue.submit(
                order.order_id, req.base_token, req.quote_token, req.side, req.amount_in,
                submitted.min_acceptable_price, submitted.valid_until,
            )  # fmt: skip
    finally:
        await close_venues(venues)


async def test_a_swap_that_landed_while_nobody_could_ask_is_confirmed_not_expired(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues(latency=0.5)
    for venue in venues.values():
        venue.drop_replies = True  # the venue accepts the swap, the reply is lost...
    order = order_request()
    try:
        async with (
            running(infra, topics, venues, SHORT) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(await intake(infra, topics, [(1, order)]))
            await log.wait_for(lambda r: last_type(r, order.order_id) == "OrderSubmitted", 30, "submitted")
            go_down(venues, down=True)  # ...then the venue is out of reach (its settlement feed too)
            submitted = log.by_order[order.order_id][3].data
            assert submitted.valid_until is not None
            deadline = submitted.valid_until.timestamp()
            await until(lambda: time.time() > deadline + SHORT.status_grace_s + 1.0, 10, "deadline + grace")
            await log.settle(0.3)
            assert last_type(log, order.order_id) == "OrderSubmitted"
            go_down(venues, down=False)
            await log.wait_terminal([order.order_id], 30)
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            assert events[-1].type == "OrderConfirmed", "a swap that filled is never marked failed"
        assert sum(v.inner.ledger_count(order.order_id) for v in venues.values()) == 1
    finally:
        await close_venues(venues)


async def test_a_venue_back_before_the_deadline_gets_the_swap_and_it_is_confirmed(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues()
    order = order_request()
    options = dataclasses.replace(SHORT, landing_deadline_s=5.0)
    try:
        async with (
            running(infra, topics, venues, options) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            for venue in venues.values():
                venue.lose_submits = True
            await core.handle(await intake(infra, topics, [(2, order)]))
            await log.wait_for(lambda r: last_type(r, order.order_id) == "OrderSubmitted", 30, "submitted")
            asked = sum(len(v.status_calls) for v in venues.values())
            go_down(venues, down=True)
            await until(
                lambda: sum(len(v.status_calls) for v in venues.values()) >= asked + 2, 10, "look-ups fail"
            )
            submitted = log.by_order[order.order_id][3].data
            assert submitted.valid_until is not None and time.time() < submitted.valid_until.timestamp() - 2
            for venue in venues.values():
                venue.lose_submits = False
            go_down(venues, down=False)
            await log.wait_terminal([order.order_id], 30)
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            assert events[-1].type == "OrderConfirmed"
            assert events[-1].occurred_at < submitted.valid_until
        assert sum(v.inner.ledger_count(order.order_id) for v in venues.values()) == 1
    finally:
        await close_venues(venues)


async def test_ten_thousand_and_one_swaps_awaiting_reconciliation_all_end_after_a_restart(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues()
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 7) for i in range(10_001)]
    # A long deadline: every swap is still valid when the successor finds the venue never got it.
    options = RouterOptions(
        quote_timeout_s=5.0, submit_retry_s=2.0, submit_retry_cap_s=5.0, landing_deadline_s=600
    )
    try:
        for venue in venues.values():
            venue.lose_submits = True  # every submit is lost: 10,001 swaps the router is unsure of
        async with running(infra, topics, venues, options) as core:
            for start in range(0, len(orders), 2000):
                chunk = orders[start : start + 2000]
                await core.handle(await intake(infra, topics, [(i % 3, o) for i, o in enumerate(chunk)]))
            submitted = sum(
                1 for w in core.workers.values() for t in w.active.values() if t.phase == "submitted"
            )
            assert submitted == len(orders)
        for venue in venues.values():
            venue.lose_submits = False
            venue.status_calls.clear()
        # The reader starts first: the successor looks its swaps up as soon as it holds its partitions,
        # and the venue settles them within a second, so it is counted the moment it took them over.
        async with (
            LogReader(infra.bootstrap_servers, topics.events) as log,
            running(infra, topics, venues, options) as successor,
        ):
            assert sum(len(w.active) for w in successor.workers.values()) == len(orders)
            await log.wait_terminal([o.order_id for o in orders], 240)
            await log.settle(1.0)
            for order in orders:
                assert_lifecycle(log.by_order[order.order_id])
        calls = [n for v in venues.values() for n in v.status_calls]
        assert max(calls) <= MAX_STATUS_BATCH, max(calls)
        assert all(sum(v.inner.ledger_count(o.order_id) for v in venues.values()) == 1 for o in orders)
    finally:
        await close_venues(venues)
