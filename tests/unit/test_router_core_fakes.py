"""The router core driven without a broker: a fake transactional producer (tests/router_fakes.py), the
in-process simulated venues, and the in-memory admissions store. What the integration tests check against
the real broker, at the cost of a unit test: commits that fail, fencing, recovery, durable dedup, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping

import pytest
from prometheus_client import REGISTRY

from events.codec import encode
from events.lifecycle import fold
from events.topics import Topics
from events.types import AnyEvent, OrderRequested
from services.router.admission import InMemoryAdmissions
from services.router.core import RouterCore
from services.router.options import RouterOptions
from services.router.partitions import RecoveryExhausted
from services.router.worker import Record
from services.venue.config import VENUE_SPECS
from services.venue.interface import MAX_STATUS_BATCH, SubmitExpired, Venue
from services.venue.simulator import SimulatedVenue
from tests.router_fakes import FakeBroker, FaultyVenue, until
from tests.samples import order_request

TOKENS = ("SOL", "USDC", "ETH", "USDT")
TOPICS = Topics.with_prefix("unit.")
FAST = RouterOptions(
    quote_timeout_s=0.5,
    submit_retry_s=0.02,
    submit_retry_cap_s=0.1,
    reconcile_after_s=0.5,
    reconcile_every_s=0.02,
    recovery_backoff_s=(0.01, 0.05),
)


def venues(latency: float = 0.0) -> dict[str, FaultyVenue]:
    return {
        name: FaultyVenue(SimulatedVenue(name, spec, TOKENS, seed=3, execution_latency_s=latency))
        for name, spec in VENUE_SPECS.items()
    }


@contextlib.asynccontextmanager
async def running(
    broker: FakeBroker,
    venue_map: Mapping[str, FaultyVenue],
    options: RouterOptions = FAST,
    admissions: InMemoryAdmissions | None = None,
    partitions: frozenset[int] = frozenset({0, 1, 2}),
) -> AsyncIterator[RouterCore]:
    as_venues: dict[str, Venue] = dict(venue_map)  # type: ignore[arg-type]  # FaultyVenue is a Venue
    core = RouterCore(
        "fake:0",
        TOPICS,
        TOPICS.router_state,
        "unit.group",
        as_venues,
        options,
        broker.producer,
        admissions=admissions or InMemoryAdmissions(),
        restore=broker.restorer(TOPICS.router_state, options.memory_orders),
    )
    unsubscribe = [v.on_settled(core.on_settlement) for v in venue_map.values()]
    await core.start()
    await core.assign(set(partitions))
    try:
        yield core
    finally:
        await core.stop()
        for off in unsubscribe:
            off()


@pytest.fixture
async def venue_map() -> AsyncIterator[dict[str, FaultyVenue]]:
    made = venues()
    yield made
    for venue in made.values():
        await venue.aclose()


def record(order: OrderRequested, partition: int, offset: int, body: OrderRequested | None = None) -> Record:
    return Record(partition, offset, encode(body or order), order.order_id.encode())


def ended(broker: FakeBroker, *orders: OrderRequested) -> bool:
    events = broker.events(TOPICS.events)
    return all(
        events.get(o.order_id) and events[o.order_id][-1].type in ("OrderConfirmed", "OrderFailed")
        for o in orders
    )


def one_lifecycle(broker: FakeBroker, order: OrderRequested) -> list[AnyEvent]:
    """The order's events: seq 1..n once, legal in the shared lifecycle, ending once."""
    events = broker.events(TOPICS.events)[order.order_id]
    state = fold(events)
    assert state is not None and state.status in ("confirmed", "failed"), [e.type for e in events]
    return events


def ledger_entries(venue_map: Mapping[str, FaultyVenue], order_id: str) -> int:
    return sum(v.inner.ledger_count(order_id) for v in venue_map.values())


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"oee_router_{name}_total", labels) or 0.0


async def test_an_order_runs_its_lifecycle_through_the_fake_broker(venue_map: dict[str, FaultyVenue]) -> None:
    broker = FakeBroker()
    order = order_request()
    async with running(broker, venue_map) as core:
        await core.handle([record(order, 0, 0)])
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
    events = one_lifecycle(broker, order)
    assert [e.type for e in events][-1] == "OrderConfirmed"
    submitted = events[3].data
    assert submitted.valid_until is not None
    assert (submitted.valid_until - events[3].occurred_at).total_seconds() == pytest.approx(60.0)
    assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_commit_that_never_landed_is_recovered_and_the_batch_handled_again(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    order, garbage = order_request(), Record(0, 1, b"not an event", b"x")
    before = counter("recoveries", outcome="recovered")
    async with running(broker, venue_map) as core:
        first_worker = core.workers[0]
        broker.fail_commit(0)
        await core.handle([record(order, 0, 0), garbage])  # returns: recovered in-process, not crashed
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
        assert core.workers[0] is not first_worker and not core.crashed.done()
    assert broker.failed_commits == 1
    assert counter("recoveries", outcome="recovered") == before + 1
    one_lifecycle(broker, order)
    assert len(broker.logs[(TOPICS.dead_letters, broker.partition_of(b"x"))]) == 1
    assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_commit_that_landed_though_it_failed_is_not_handled_twice(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    order = order_request()
    async with running(broker, venue_map) as core:
        broker.fail_commit(1, landed=True)
        await core.handle([record(order, 1, 0)])
        # The restore shows the position past the record and the order submitted, though no swap was sent:
        # it is looked up (unknown), submitted, and settles once.
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
        assert core.workers[1].next_offset == 1
    events = one_lifecycle(broker, order)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_fenced_partition_is_dropped_and_the_others_carry_on(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    lost, kept = order_request(), order_request()
    async with running(broker, venue_map) as core:
        usurper = broker.producer(core.partitions.transactional_id(1))
        await usurper.start()  # another router took partition 1: our producer of it is fenced
        await core.handle([record(lost, 1, 0), record(kept, 2, 0)])
        await until(lambda: ended(broker, kept), 10, "the other partition's order ends")
        assert 1 not in core.workers and not core.crashed.done()
    assert lost.order_id not in broker.events(TOPICS.events)


async def test_commits_failing_again_and_again_stop_the_process(venue_map: dict[str, FaultyVenue]) -> None:
    broker = FakeBroker()
    options = RouterOptions(recovery_limit=2, recovery_window_s=60.0, recovery_backoff_s=(0.01, 0.01))
    order = order_request()
    async with running(broker, venue_map, options) as core:
        for _ in range(3):
            broker.fail_commit(0)
        handling = asyncio.create_task(core.handle([record(order, 0, 0)]))
        failure = await asyncio.wait_for(asyncio.shield(core.crashed), 10)
        handling.cancel()
        assert isinstance(failure, RecoveryExhausted), repr(failure)
    assert order.order_id not in broker.events(TOPICS.events)


async def test_a_failed_settlement_commit_still_ends_the_order_once() -> None:
    broker = FakeBroker()
    slow = venues(latency=0.3)
    order = order_request()
    try:
        async with running(broker, slow) as core:
            await core.handle([record(order, 2, 0)])
            await until(lambda: order.order_id in core.workers[2].memory.look_at, 10, "the swap submitted")
            broker.fail_commit(2)  # the next commit of partition 2 is the settlement's
            await until(lambda: ended(broker, order), 10, "the order's terminal event")
            assert broker.failed_commits == 1
        one_lifecycle(broker, order)
    finally:
        for venue in slow.values():
            await venue.aclose()


async def test_a_forgotten_order_sent_again_is_refused_by_the_durable_record(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    admissions = InMemoryAdmissions()
    order = order_request("sell", amount=1.0)
    other_body = order_request("buy", amount=300.0, order_id=order.order_id)
    before = counter("duplicates_ignored", caught_by="durable_record")
    options = dataclasses.replace(FAST, memory_orders=0)  # remembers no finished order
    async with running(broker, venue_map, options, admissions) as core:
        await core.handle([record(order, 0, 0)])
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
        assert not core.workers[0].memory.known(order.order_id)
        await core.handle([record(order, 0, 1)])  # the same request again
        await core.handle([record(order, 0, 2, other_body)])  # the same id with another body
        assert core.workers[0].next_offset == 3
    assert counter("duplicates_ignored", caught_by="durable_record") == before + 2
    assert len(one_lifecycle(broker, order)) == 5
    assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_swap_whose_venue_stays_down_past_its_deadline_expires(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    options = dataclasses.replace(FAST, landing_deadline_s=0.5, status_grace_s=0.2)
    order = order_request()
    before = counter("expirations")
    async with running(broker, venue_map, options) as core:
        for venue in venue_map.values():
            venue.lose_submits = True  # quotes work; every submit is lost on its way
        await core.handle([record(order, 0, 0)])
        await until(lambda: order.order_id in core.workers[0].memory.look_at, 10, "the swap submitted")
        for venue in venue_map.values():
            venue.down = True  # and nobody can be asked what happened
        deadline = core.workers[0].active[order.order_id].valid_until
        assert deadline is not None
        await until(lambda: time.time() > deadline + 0.5, 5, "the deadline and its grace passed")
        assert not ended(broker, order), "never guessed while the venue cannot be asked"
        for venue in venue_map.values():
            venue.down = False
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
    events = one_lifecycle(broker, order)
    failed, submitted = events[-1], events[3]
    assert failed.type == "OrderFailed" and failed.data.stage == "execution"
    assert failed.data.reason.startswith("expired")
    assert counter("expirations") == before + 1
    assert ledger_entries(venue_map, order.order_id) == 0
    req = order.data
    with pytest.raises(SubmitExpired):  # the venue refuses the late swap
        await venue_map[submitted.data.venue].inner.submit(
            order.order_id, req.base_token, req.quote_token, req.side, req.amount_in,
            submitted.data.min_acceptable_price, submitted.data.valid_until,
        )  # fmt: skip


async def test_reconciliation_asks_in_chunks_the_venue_accepts(venue_map: dict[str, FaultyVenue]) -> None:
    broker = FakeBroker(partitions=1)
    orders = [
        order_request("sell" if i % 2 else "buy", amount=1 + i % 5) for i in range(2 * MAX_STATUS_BATCH + 1)
    ]
    for venue in venue_map.values():
        venue.inner.execution_latency_s = (3600.0, 3600.0)
    async with running(broker, venue_map, partitions=frozenset({0})) as core:
        await core.handle([record(o, 0, i) for i, o in enumerate(orders)])
        await until(lambda: len(core.workers[0].memory.look_at) == len(orders), 30, "every swap submitted")
    for venue in venue_map.values():
        venue.inner.execution_latency_s = (0.0, 0.0)
        venue.status_calls.clear()
    async with running(broker, venue_map, partitions=frozenset({0})) as successor:
        assert len(successor.workers[0].active) == len(orders)
        await until(
            lambda: sum(n for v in venue_map.values() for n in v.status_calls) >= len(orders),
            30,
            "every swap looked up",
        )
        for venue in venue_map.values():
            for o in orders:
                venue.inner.settle_now(o.order_id)  # the chain settles them while nobody listens
        await until(lambda: ended(broker, *orders), 60, "every order's terminal event")
    calls = [n for v in venue_map.values() for n in v.status_calls]
    assert max(calls) <= MAX_STATUS_BATCH and sum(calls) >= len(orders)


async def test_one_order_id_in_two_partitions_of_one_batch_starts_once(
    venue_map: dict[str, FaultyVenue],
) -> None:
    """Produced under another key, an id can land in two partitions: only one record admits it."""
    broker = FakeBroker()
    order = order_request()
    async with running(broker, venue_map) as core:
        await core.handle([record(order, 0, 0), record(order, 1, 0)])
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
    assert len(one_lifecycle(broker, order)) == 5
    assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_partition_revoked_and_assigned_again_while_it_recovers_is_reopened(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    order = order_request()
    options = dataclasses.replace(FAST, recovery_backoff_s=(0.3, 0.3))
    async with running(broker, venue_map, options) as core:
        broker.fail_commit(0)
        handling = asyncio.create_task(core.handle([record(order, 0, 0)]))
        await until(lambda: broker.failed_commits == 1, 10, "the failed commit")
        await core.assign({1, 2})  # a rebalance takes partition 0 away during the backoff...
        await core.assign({0, 1, 2})  # ...and gives it back
        await asyncio.wait_for(handling, 10)
        await until(lambda: ended(broker, order), 10, "the order's terminal event")
        assert 0 in core.workers and not core.crashed.done()
    one_lifecycle(broker, order)


async def test_records_handed_over_past_a_gap_wait_for_the_ones_before_them(
    venue_map: dict[str, FaultyVenue],
) -> None:
    """What the chaos drill caught: around a rebalance, the consumer handed a router offset 4 of a partition
    whose position was 1, and the position moved past three acknowledged orders nobody had routed. Now the
    records past the gap are not taken, the consumer is rewound to the position, and what it reads again
    starts every order once, in offset order."""
    broker = FakeBroker()
    orders = [order_request() for _ in range(5)]
    rewinds: list[tuple[int, int]] = []
    async with running(broker, venue_map) as core:

        async def rewind(partition: int, offset: int) -> bool:
            rewinds.append((partition, offset))
            return True

        core.rewind = rewind
        await core.handle([record(orders[0], 0, 0)])
        await until(lambda: ended(broker, orders[0]), 10, "the first order's terminal event")
        await core.assign({1, 2})  # a rebalance: partition 0 goes and comes back
        await core.assign({0, 1, 2})
        await until(lambda: (0, 1) in rewinds, 10, "the consumer sent to the restored position on opening")
        await core.handle([record(orders[4], 0, 4)])  # 1-3 were dropped by the consumer
        assert rewinds[-2:] == [(0, 1), (0, 1)], "read again from the position"
        assert orders[4].order_id not in broker.events(TOPICS.events), "nothing past the gap started"
        # What the consumer reads again, with a record fetched before the rewind mixed in.
        await core.handle([record(orders[4], 0, 4), *(record(o, 0, n) for n, o in enumerate(orders[1:4], 1))])
        await until(lambda: ended(broker, *orders), 10, "every order's terminal event")
        assert core.workers[0].next_offset == 5
    for order in orders:
        assert len(one_lifecycle(broker, order)) == 5
        assert ledger_entries(venue_map, order.order_id) == 1


async def test_a_gap_that_is_there_again_after_a_rewind_is_an_empty_stretch(
    venue_map: dict[str, FaultyVenue],
) -> None:
    """Offsets a transactional writer's commit markers take hold no record: read again from the position,
    the consumer starts at the same offset once more, and the router goes on from there (once)."""
    broker = FakeBroker()
    first, after = order_request(), order_request()
    rewinds: list[tuple[int, int]] = []
    async with running(broker, venue_map) as core:

        async def rewind(partition: int, offset: int) -> bool:
            rewinds.append((partition, offset))
            return True

        core.rewind = rewind
        await core.handle([record(first, 1, 0)])
        await core.handle([record(after, 1, 2)])  # offset 1 is a marker
        assert rewinds[-1] == (1, 1) and after.order_id not in broker.events(TOPICS.events)
        await core.handle([record(after, 1, 2)])  # read again: 2 is still the first record
        await until(lambda: ended(broker, first, after), 10, "both orders' terminal events")
        assert rewinds.count((1, 1)) == 1
        assert core.workers[1].next_offset == 3


async def test_a_rewind_that_failed_does_not_pass_for_an_empty_stretch(
    venue_map: dict[str, FaultyVenue],
) -> None:
    broker = FakeBroker()
    first, missing, after = order_request(), order_request(), order_request()
    answers = [False, True]
    async with running(broker, venue_map) as core:

        async def rewind(partition: int, offset: int) -> bool:
            return answers.pop(0) if offset == 1 else True

        core.rewind = rewind
        await core.handle([record(first, 2, 0)])
        await core.handle([record(after, 2, 2)])  # gap; the rewind fails
        await core.handle([record(after, 2, 2)])  # the same gap again is not taken as empty: rewind again
        assert after.order_id not in broker.events(TOPICS.events) and answers == []
        await core.handle([record(missing, 2, 1), record(after, 2, 2)])
        await until(lambda: ended(broker, first, missing, after), 10, "every order's terminal event")
