"""Limit and sniper orders, cancels and expiries in the router core, through the fake broker: the owner of an
order answers every request about it in the order it reads them, so a cancel racing a trigger ends in
exactly one of the two, a repeated trigger changes nothing, and the resting topic follows the book."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from events.codec import encode
from events.commands import Command, encode_command
from events.lifecycle import fold
from events.resting import decode_resting
from events.types import AnyEvent, OrderRequested
from services.router.worker import Record
from tests.router_fakes import FakeBroker, FaultyVenue, until
from tests.samples import cancel_command, limit_request, order_request, sniper_request, trigger_command
from tests.unit.test_router_core_fakes import TOPICS, running, venues


@pytest.fixture
async def venue_map() -> AsyncIterator[dict[str, FaultyVenue]]:
    made = venues()
    yield made
    for venue in made.values():
        await venue.aclose()


class Intake:
    """Writes one partition's intake records with increasing offsets, as Faust would hand them over."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.offset = 0

    def __call__(self, *items: OrderRequested | Command) -> list[Record]:
        records = []
        for item in items:
            raw = encode(item) if isinstance(item, OrderRequested) else encode_command(item)
            records.append(Record(self.partition, self.offset, raw, item.order_id.encode()))
            self.offset += 1
        return records


def events_of(broker: FakeBroker, order: OrderRequested) -> list[AnyEvent]:
    return broker.events(TOPICS.events).get(order.order_id, [])  # type: ignore[return-value]


def types(broker: FakeBroker, order: OrderRequested) -> list[str]:
    return [e.type for e in events_of(broker, order)]


def status(broker: FakeBroker, order: OrderRequested) -> str | None:
    state = fold(events_of(broker, order))
    return None if state is None else state.status


def resting(broker: FakeBroker) -> dict[str, bytes | None]:
    """The resting topic as compaction would leave it: each order's last record (None: a tombstone)."""
    last: dict[str, bytes | None] = {}
    for p in range(broker.partitions):
        for written in broker.logs[(TOPICS.resting, p)]:
            assert written.key is not None
            last[written.key.decode()] = written.value
    return last


async def test_a_limit_order_rests_until_triggered_then_routes_within_its_limit(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    intake = Intake()
    order = limit_request("sell", limit=140.0, amount=2.0)  # below the market: any trigger fills it
    async with running(broker, venue_map) as core:
        await core.handle(intake(order))
        assert types(broker, order) == ["OrderRequested", "OrderOpened"]
        record = resting(broker)[order.order_id]
        assert record is not None
        book = decode_resting(record)
        assert (book.order_type, book.side, book.bound, book.amount_in) == ("limit", "sell", 140.0, 2.0)
        assert book.opened_at == events_of(broker, order)[1].occurred_at
        assert not any(v.inner.ledger_count(order.order_id) for v in venue_map.values()), "no swap yet"

        await core.handle(intake(trigger_command(order.order_id, price=150.0, bound=140.0)))
        await until(lambda: status(broker, order) == "confirmed", 10, "the triggered order fills")
        await core.handle(intake(trigger_command(order.order_id, price=151.0, bound=140.0)))  # a repeat
    assert types(broker, order) == [
        "OrderRequested", "OrderOpened", "OrderTriggered", "OrderRouting", "OrderBuilding", "OrderSubmitted",
        "OrderConfirmed",
    ]  # fmt: skip
    submitted, confirmed = events_of(broker, order)[5], events_of(broker, order)[6]
    assert submitted.data.min_acceptable_price == 140.0, "the swap's bound is the limit price"  # type: ignore[union-attr]
    assert confirmed.data.executed_price >= 140.0  # type: ignore[union-attr]
    assert resting(broker)[order.order_id] is None, "the trigger took it off the book"


async def test_a_cancel_ends_a_resting_order_and_a_later_trigger_changes_nothing(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    intake = Intake()
    order = limit_request("buy", limit=100.0, amount=150.0)
    async with running(broker, venue_map) as core:
        await core.handle(intake(order))
        await core.handle(intake(cancel_command(order.order_id)))
        await core.handle(intake(trigger_command(order.order_id, price=99.0, bound=100.0)))
        await core.handle(intake(cancel_command(order.order_id)))  # idempotent: nothing more
    assert types(broker, order) == ["OrderRequested", "OrderOpened", "OrderCancelled"]
    cancelled = events_of(broker, order)[2].data
    assert cancelled.from_status == "open"  # type: ignore[union-attr]
    assert resting(broker)[order.order_id] is None


async def test_a_cancel_after_the_submit_is_refused_once_and_the_order_fills(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    slow = venues(latency=0.5)
    intake = Intake()
    order = order_request("sell", amount=1.0)
    try:
        async with running(broker, slow) as core:
            await core.handle(intake(order))
            await core.handle(intake(cancel_command(order.order_id), cancel_command(order.order_id)))
            await until(lambda: status(broker, order) == "confirmed", 10, "the market order fills")
    finally:
        for venue in slow.values():
            await venue.aclose()
    assert types(broker, order) == [
        "OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderCancelRefused",
        "OrderConfirmed",
    ]  # fmt: skip
    refusal = events_of(broker, order)[4].data
    assert (refusal.reason, refusal.status) == ("submitted", "submitted")  # type: ignore[union-attr]


async def test_a_cancel_racing_a_trigger_ends_in_exactly_one_of_the_two() -> None:
    """However the requests interleave, an order ends either cancelled (no swap, nothing submitted) or
    filled (its cancel refused): the owner applies them in the order it reads them."""
    venue_map = venues(latency=0.3)  # the swap is still pending when the late cancel arrives
    broker = FakeBroker()
    intake = Intake()
    same_batch_trigger_first = limit_request("sell", 140.0)
    same_batch_cancel_first = limit_request("sell", 140.0)
    trigger_committed_first = limit_request("sell", 140.0)
    orders = (same_batch_trigger_first, same_batch_cancel_first, trigger_committed_first)
    async with running(broker, venue_map) as core:
        await core.handle(intake(*orders))
        await core.handle(
            intake(
                trigger_command(same_batch_trigger_first.order_id, 150.0, 140.0),
                cancel_command(same_batch_cancel_first.order_id),
                cancel_command(same_batch_trigger_first.order_id),  # read before the quotes: still in time
                trigger_command(same_batch_cancel_first.order_id, 150.0, 140.0),
                trigger_command(trigger_committed_first.order_id, 150.0, 140.0),
            )
        )
        await core.handle(intake(cancel_command(trigger_committed_first.order_id)))  # after the submit
        await until(lambda: status(broker, trigger_committed_first) == "confirmed", 10, "the last one fills")
    assert types(broker, same_batch_trigger_first)[-3:] == [
        "OrderTriggered",
        "OrderRouting",
        "OrderCancelled",
    ]
    assert types(broker, same_batch_cancel_first) == ["OrderRequested", "OrderOpened", "OrderCancelled"]
    assert types(broker, trigger_committed_first)[-2:] == ["OrderCancelRefused", "OrderConfirmed"]
    for order in orders:
        kinds = types(broker, order)
        swaps = sum(v.inner.ledger_count(order.order_id) for v in venue_map.values())
        cancelled = "OrderCancelled" in kinds
        assert cancelled != ("OrderSubmitted" in kinds), kinds
        assert swaps == (0 if cancelled else 1)
    for venue in venue_map.values():
        await venue.aclose()


async def test_a_triggered_order_whose_quotes_fail_can_still_be_cancelled(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    intake = Intake()
    order = limit_request("sell", 140.0)
    async with running(broker, venue_map) as core:
        await core.handle(intake(order))
        for venue in venue_map.values():
            venue.down = True  # no quote: the order waits for its retry in `routing`
        await core.handle(intake(trigger_command(order.order_id, 150.0, 140.0)))
        assert status(broker, order) == "routing"
        await core.handle(intake(cancel_command(order.order_id)))
        for venue in venue_map.values():
            venue.down = False
        await asyncio.sleep(1.2)  # past the first retry's backoff (1 s): a retry must not revive it
    assert types(broker, order) == [
        "OrderRequested", "OrderOpened", "OrderTriggered", "OrderRouting", "OrderCancelled",
    ]  # fmt: skip
    assert events_of(broker, order)[-1].data.from_status == "routing"  # type: ignore[union-attr]


async def test_a_resting_order_expires_at_its_time_and_after_a_restart_too(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    intake = Intake()
    soon, later = (
        limit_request("sell", 500.0, expires_in_s=0.3),
        limit_request("sell", 500.0, expires_in_s=1.0),
    )
    async with running(broker, venue_map) as core:
        await core.handle(intake(soon, later))
        await until(lambda: status(broker, soon) == "expired", 5, "the first expiry")
        assert status(broker, later) == "open"
    async with running(broker, venue_map):  # a restarted router restores `later` and expires it on time
        await until(lambda: status(broker, later) == "expired", 5, "the restored order's expiry")
    expired = events_of(broker, later)[-1]
    assert expired.type == "OrderExpired" and expired.data.expires_at == later.data.expires_at  # type: ignore[union-attr]
    assert expired.occurred_at >= later.data.expires_at  # type: ignore[operator]
    assert resting(broker) == {soon.order_id: None, later.order_id: None}


async def test_a_sniper_routes_only_to_the_listing_venue_or_fails_on_its_guard(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    intake = Intake()
    await venue_map["meteora"].inner.list_pool("BONK", "USDC", 4e9, 100_000.0)
    await venue_map["raydium"].inner.list_pool("BONK", "USDC", 4e9, 90_000.0)  # cheaper, but not named
    sniper, thin = sniper_request(max_price=0.0001), sniper_request(min_liquidity=1e6)
    async with running(broker, venue_map) as core:
        await core.handle(intake(sniper, thin))
        await core.handle(
            intake(
                trigger_command(sniper.order_id, 2.6e-5, 1e-4, "meteora", ("meteora",), liquidity=1e5),
                trigger_command(
                    thin.order_id,
                    2.6e-5,
                    1e-4,
                    "meteora",
                    ("meteora",),
                    liquidity=1e5,
                    refusal="thin pool: meteora BONK/USDC holds 100,000 USDC, fewer than minLiquidity 1,000,000",
                ),
            )
        )
        await until(lambda: status(broker, sniper) == "confirmed", 10, "the sniper fills")
    building = events_of(broker, sniper)[4].data
    assert [q.venue for q in building.quotes] == ["meteora"]  # type: ignore[union-attr]
    assert events_of(broker, sniper)[5].data.min_acceptable_price == 1e-4  # type: ignore[union-attr]
    failed = events_of(broker, thin)[-1]
    assert types(broker, thin) == ["OrderRequested", "OrderOpened", "OrderFailed"]
    assert failed.data.stage == "trigger" and failed.data.reason.startswith("thin pool")  # type: ignore[union-attr]
    assert resting(broker) == {sniper.order_id: None, thin.order_id: None}


async def test_another_accounts_cancel_changes_nothing(venue_map: dict[str, FaultyVenue]) -> None:
    broker = FakeBroker()
    intake = Intake()
    order = limit_request("sell", 500.0, account="alice")
    async with running(broker, venue_map) as core:
        await core.handle(intake(order, cancel_command(order.order_id, account="mallory")))
        assert status(broker, order) == "open"
        await core.handle(intake(cancel_command(order.order_id, account="alice")))
    assert status(broker, order) == "cancelled"


async def test_a_trigger_read_after_the_orders_expiry_expires_it_instead(
    venue_map: dict[str, FaultyVenue],
) -> None:
    from services.router import resting
    from services.router.flow import accept

    order = limit_request("sell", 140.0, expires_in_s=60.0)
    opened = accept(order, order.occurred_at).tracked
    assert order.data.expires_at is not None
    late = order.data.expires_at + timedelta(milliseconds=1)
    step = resting.trigger(opened, trigger_command(order.order_id, 150.0, 140.0), late)
    assert step is not None and [e.type for e in step.events] == ["OrderExpired"] and step.rests is False
    on_time = resting.trigger(opened, trigger_command(order.order_id, 150.0, 140.0), order.occurred_at)
    assert on_time is not None and [e.type for e in on_time.events] == ["OrderTriggered", "OrderRouting"]
