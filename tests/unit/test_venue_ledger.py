"""The venue with its journal: journal first, memory after; settled once across restarts; deadlines kept.

A "restart" here is closing one `SimulatedVenue` and building another on the same journal file (the process
kill is in tests/e2e/test_venue_restart.py). Time is a `ManualClock`; the disk is real, and
`tests.venue_disk.Disk` fills it up or holds its writes on demand.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.venue.clock import ManualClock
from services.venue.config import VenueConfig, build_venues
from services.venue.interface import SubmitConflict, SubmitExpired, SwapStatus, VenueUnavailable
from services.venue.journal import OsFile, read_lines
from services.venue.ledger import Ledger
from services.venue.pool import METEORA, RAYDIUM
from services.venue.simulator import SETTLE_RETRY_S, SimulatedVenue
from tests.venue_disk import Disks

TOKENS = ("SOL", "USDC", "ETH", "USDT")
Make = Callable[..., SimulatedVenue]
BIG_SELL = ("SOL", "USDC", "sell", 2_000.0, 1.0)  # ~7 % of Raydium's SOL reserve: moves the price a lot


def cid() -> str:
    return f"order-{uuid.uuid4()}"


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[SimulatedVenue] = []

    def _make(name: str = "raydium", *, open_file: Any = OsFile, **kwargs: Any) -> SimulatedVenue:
        kwargs.setdefault("seed", 5)
        kwargs.setdefault("execution_latency_s", 1.0)
        ledger = Ledger(tmp_path / f"ledger-{name}.jsonl", open_file=open_file)
        venue = SimulatedVenue(
            name, RAYDIUM if name == "raydium" else METEORA, TOKENS, ledger=ledger, **kwargs
        )
        made.append(venue)
        return venue

    yield _make
    for venue in made:
        await venue.aclose()


def k(venue: SimulatedVenue) -> float:
    """The SOL/USDC pool's invariant: drift keeps it, an executed swap (its fee) grows it."""
    pool = venue.pools.pool("SOL", "USDC", venue._clock.now())
    return pool.reserve_a * pool.reserve_b


def journal_ops(path: Path) -> list[str]:
    import orjson

    return [orjson.loads(raw)["op"] for _, raw in read_lines(path)]


async def test_a_failed_acceptance_write_is_unavailable_and_executes_nothing(
    make: Make, tmp_path: Path
) -> None:
    clock, disks = ManualClock(), Disks()
    venue = make(clock=clock, open_file=disks)
    quote = await venue.quote("SOL", "USDC", "sell", 1.0)
    disks["ledger-raydium.jsonl"].full = True
    order = cid()
    with pytest.raises(VenueUnavailable, match=r"journal write failed \(ENOSPC.*not accepted"):
        await venue.submit(order, *BIG_SELL)
    assert (await venue.status(order)).state == "unknown"
    assert venue.ledger_count(order) == 0 and venue.pending_count == 0 and len(venue.ledger) == 0
    assert venue.order_ids.owner(order) is None  # the id is free again
    assert await venue.quote("SOL", "USDC", "sell", 1.0) == quote  # still serving; the pool did not move
    assert (tmp_path / "ledger-raydium.jsonl").read_bytes() == b""

    disks["ledger-raydium.jsonl"].full = False  # the disk is back: the same id goes through, once
    receipt = await venue.submit(order, *BIG_SELL)
    clock.advance(1.0)
    assert (await venue.wait_settled(order)).state == "confirmed"
    assert venue.ledger_count(order) == 1 and venue.ledger.settlements(order) == 1
    assert (await venue.status(order)).tx_hash == receipt.tx_hash
    assert journal_ops(tmp_path / "ledger-raydium.jsonl") == ["accept", "settle"]


async def test_a_journal_on_dev_full_answers_unavailable_and_keeps_serving() -> None:
    venue = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=1, ledger=Ledger(Path("/dev/full")))
    try:
        order = cid()
        for _ in range(2):
            with pytest.raises(VenueUnavailable, match="ENOSPC"):
                await venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
        assert (await venue.status(order)).state == "unknown" and venue.pending_count == 0
        assert (await venue.quote("SOL", "USDC", "sell", 1.0)).price > 0
    finally:
        await venue.aclose()


async def test_a_failed_settlement_write_changes_nothing_until_the_disk_is_back(make: Make) -> None:
    clock, disks = ManualClock(), Disks()
    venue = make(clock=clock, open_file=disks)
    disk = disks["ledger-raydium.jsonl"]
    order = cid()
    await venue.submit(order, *BIG_SELL)
    seen: list[SwapStatus] = []
    venue.on_settled(seen.append)
    invariant = k(venue)
    disk.full = True
    await clock.wait_for_sleepers(1)  # the settlement task waits for the swap's due time
    clock.advance(1.0)
    await clock.wait_for_sleepers(1)  # ...tried, failed, and now waits to retry
    assert (await venue.status(order)).state == "pending" and venue.ledger.settlements(order) == 0
    assert seen == [] and k(venue) == pytest.approx(invariant, rel=1e-12)  # no pool effect either

    disk.full = False
    clock.advance(SETTLE_RETRY_S)
    settled = await venue.wait_settled(order)
    assert settled.state == "confirmed" and seen == [settled] and venue.ledger.settlements(order) == 1
    assert k(venue) > invariant * (1 + 1e-5)


async def test_acceptances_of_one_turn_share_one_write_and_so_do_their_settlements(make: Make) -> None:
    clock, disks = ManualClock(), Disks()
    venue = make(clock=clock, open_file=disks)
    orders = [cid() for _ in range(200)]
    await asyncio.gather(*(venue.submit(o, "USDC", "USDT", "sell", 10.0, 0.5) for o in orders))
    clock.advance(1.0)
    await asyncio.gather(*(venue.wait_settled(o) for o in orders))
    assert [w.count(b"\n") for w in disks["ledger-raydium.jsonl"].writes] == [200, 200]


async def test_nothing_is_visible_while_the_acceptance_is_being_written(make: Make) -> None:
    disks = Disks()
    venue = make(open_file=disks)
    disk = disks["ledger-raydium.jsonl"]
    disk.gate.clear()
    order = cid()
    first = asyncio.create_task(venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0))
    await asyncio.to_thread(disk.writing.wait, 10)
    assert (await venue.status(order)).state == "unknown" and venue.pending_count == 0
    again = asyncio.create_task(venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0))  # joins the first
    other = asyncio.create_task(venue.submit(order, "SOL", "USDC", "sell", 9.0, 1.0))
    disk.gate.set()
    assert await first == await again
    with pytest.raises(SubmitConflict, match="other parameters"):
        await other
    assert venue.ledger_count(order) == 1 and venue.pending_count == 1


async def test_submits_waiting_for_the_journal_are_bounded(make: Make) -> None:
    disks = Disks()
    venue = make(open_file=disks, max_accepting=3)
    disk = disks["ledger-raydium.jsonl"]
    disk.gate.clear()
    held = [asyncio.create_task(venue.submit(cid(), "SOL", "USDC", "sell", 1.0, 1.0)) for _ in range(3)]
    await asyncio.to_thread(disk.writing.wait, 10)
    with pytest.raises(VenueUnavailable, match="3 submits already wait for the journal"):
        await venue.submit(cid(), "SOL", "USDC", "sell", 1.0, 1.0)
    disk.gate.set()
    assert len(await asyncio.gather(*held)) == 3 and len(venue.ledger) == 3


async def test_a_settlement_is_applied_once_across_restarts_and_pools_resume(make: Make) -> None:
    clock = ManualClock()
    first = make(clock=clock)
    settled, pending = cid(), cid()
    valid_until = clock.utcnow() + timedelta(minutes=5)
    receipt = await first.submit(settled, *BIG_SELL, valid_until=valid_until)
    clock.advance(1.0)
    before = await first.wait_settled(settled)
    quote = await first.quote("SOL", "USDC", "sell", 1.0)
    await first.submit(pending, "SOL", "USDC", "sell", 1.0, 1.0)
    await first.aclose()  # gone with one swap settled and one pending

    second = make(clock=clock)
    seen: list[SwapStatus] = []
    second.on_settled(seen.append)
    assert await second.status(settled) == before and second.ledger.settlements(settled) == 1
    assert await second.submit(settled, *BIG_SELL, valid_until=valid_until) == receipt  # valid_until kept
    # Priced from where the swap left the pool (no time passed: no drift), not from a pool it never moved.
    assert await second.quote("SOL", "USDC", "sell", 1.0) == quote
    untouched = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=5, clock=clock)
    assert (await untouched.quote("SOL", "USDC", "sell", 1.0)).price > quote.price * 1.1
    await untouched.aclose()
    second.start()
    assert (await second.wait_settled(pending)).state == "confirmed"
    assert [s.client_order_id for s in seen] == [pending]  # the settled one is not announced again
    await second.aclose()

    third = make(clock=clock)
    assert third.pending_count == 0  # nothing left to settle: nothing can settle twice
    assert [third.ledger.settlements(o) for o in (settled, pending)] == [1, 1]
    assert await third.status(settled) == before


async def test_pools_drift_back_over_a_long_downtime(make: Make) -> None:
    clock = ManualClock()
    first = make(clock=clock, execution_latency_s=0.0)
    reference = (await first.quote("SOL", "USDC", "sell", 1.0)).price
    order = cid()
    await first.submit(order, *BIG_SELL)
    await first.wait_settled(order)
    moved = (await first.quote("SOL", "USDC", "sell", 1.0)).price
    await first.aclose()
    clock.advance(600.0)  # down for ten minutes: arbitrage pulled the price back meanwhile
    second = make(clock=clock)
    back = (await second.quote("SOL", "USDC", "sell", 1.0)).price
    assert moved < reference * 0.9 and back == pytest.approx(reference, rel=0.01)


async def test_a_swap_pending_past_its_valid_until_settles_expired_never_late(make: Make) -> None:
    clock = ManualClock()
    first = make(clock=clock, execution_latency_s=5.0)
    order, on_time = cid(), cid()
    await first.submit(order, *BIG_SELL, valid_until=clock.utcnow() + timedelta(seconds=10))
    await first.submit(
        on_time, "SOL", "USDC", "sell", 1.0, 1.0, valid_until=clock.utcnow() + timedelta(hours=1)
    )
    await first.aclose()  # the venue is down past the first swap's deadline
    clock.advance(60.0)
    second = make(clock=clock)
    invariant = k(second)
    second.start()
    expired = await second.wait_settled(order)
    assert expired.state == "failed" and expired.reason is not None and expired.reason.startswith("expired")
    assert expired.executed_price is None and (await second.wait_settled(on_time)).state == "confirmed"
    assert k(second) < invariant * (1 + 1e-6)  # only the 1-SOL swap executed


async def test_a_submit_received_after_its_valid_until_is_refused_and_never_recorded(
    make: Make, tmp_path: Path
) -> None:
    clock = ManualClock()
    venue = make(clock=clock)
    order = cid()
    late = clock.utcnow() - timedelta(milliseconds=1)
    with pytest.raises(SubmitExpired, match="after its valid_until"):
        await venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0, valid_until=late)
    assert (await venue.status(order)).state == "unknown" and venue.ledger_count(order) == 0
    assert venue.pending_count == 0 and venue.order_ids.owner(order) is None
    assert (tmp_path / "ledger-raydium.jsonl").read_bytes() == b""


async def test_one_client_order_id_lands_on_one_venue_even_across_restarts(tmp_path: Path) -> None:
    config = VenueConfig.from_env({"VENUE_SEED": "3", "VENUE_LEDGER_PATH": str(tmp_path / "ledger.jsonl")})
    order = cid()
    venues = build_venues(config, TOKENS)
    try:
        receipt = await venues["raydium"].submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
        with pytest.raises(SubmitConflict, match="taken by a swap on raydium"):
            await venues["meteora"].submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
        assert venues["meteora"].ledger_count(order) == 0
        assert (await venues["meteora"].status(order)).state == "unknown"
    finally:
        for venue in venues.values():
            await venue.aclose()
    venues = build_venues(config, TOKENS)  # the registry is rebuilt from the journals
    try:
        with pytest.raises(SubmitConflict, match="taken by a swap on raydium"):
            await venues["meteora"].submit(order, "SOL", "USDC", "buy", 150.0, 1e6)
        assert await venues["raydium"].submit(order, "SOL", "USDC", "sell", 1.0, 1.0) == receipt
        with pytest.raises(SubmitConflict, match="other parameters"):
            await venues["raydium"].submit(order, "SOL", "USDC", "sell", 1.0, 2.0)
        assert venues["meteora"].ledger_count(order) == 0 and venues["raydium"].ledger_count(order) == 1
    finally:
        for venue in venues.values():
            await venue.aclose()


async def test_two_venues_racing_for_one_id_while_the_journal_writes(tmp_path: Path) -> None:
    disks = Disks()
    venues = [
        SimulatedVenue(name, spec, TOKENS, seed=1, ledger=Ledger(tmp_path / f"{name}.jsonl", open_file=disks))
        for name, spec in (("raydium", RAYDIUM), ("meteora", METEORA))
    ]
    venues[1].order_ids = venues[0].order_ids  # one chain
    raydium, meteora = venues
    try:
        disk = disks["raydium.jsonl"]
        disk.gate.clear()
        order = cid()
        accepting = asyncio.create_task(raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0))
        await asyncio.to_thread(disk.writing.wait, 10)
        with pytest.raises(SubmitConflict, match="taken by a swap on raydium"):  # claimed before durable
            await meteora.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
        disk.full = True  # ...and raydium's write fails: not accepted, the id is free again
        disk.gate.set()
        with pytest.raises(VenueUnavailable, match="not accepted"):
            await accepting
        assert (await meteora.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)).venue == "meteora"
        with pytest.raises(SubmitConflict, match="taken by a swap on meteora"):
            await raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
    finally:
        for venue in venues:
            await venue.aclose()


async def test_concurrent_submits_of_one_id_to_both_venues_execute_once() -> None:
    from services.venue.registry import ClientOrderIds

    ids = ClientOrderIds()
    raydium = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=1, order_ids=ids, quote_latency_s=(0.0, 0.01))
    meteora = SimulatedVenue("meteora", METEORA, TOKENS, seed=1, order_ids=ids, quote_latency_s=(0.0, 0.01))
    try:
        order = cid()
        outcomes = await asyncio.gather(
            *(v.submit(order, "SOL", "USDC", "sell", 1.0, 1.0) for v in [raydium, meteora] * 20),
            return_exceptions=True,
        )
        receipts = {o for o in outcomes if not isinstance(o, BaseException)}
        assert len(receipts) == 1 and all(
            isinstance(o, SubmitConflict) for o in outcomes if o not in receipts
        )
        assert raydium.ledger_count(order) + meteora.ledger_count(order) == 1
    finally:
        await raydium.aclose()
        await meteora.aclose()


async def test_a_torn_last_line_is_skipped_and_what_follows_is_kept(make: Make, tmp_path: Path) -> None:
    clock = ManualClock()
    first = make(clock=clock, execution_latency_s=0.0)
    kept = cid()
    await first.submit(kept, "SOL", "USDC", "sell", 1.0, 1.0)
    status = await first.wait_settled(kept)
    await first.aclose()
    path = tmp_path / "ledger-raydium.jsonl"
    with path.open("ab") as f:
        f.write(b'{"op": "accept", "data": {"venue": "raydium", "client_order_id": "torn')  # a crash mid-line

    second = make(clock=clock, execution_latency_s=0.0)
    assert await second.status(kept) == status and len(second.ledger) == 1
    after = cid()
    await second.submit(after, "SOL", "USDC", "sell", 1.0, 1.0)
    await second.wait_settled(after)
    await second.aclose()
    third = make(clock=clock)
    assert {r.receipt.client_order_id for r in third.ledger.records()} == {kept, after}
    assert journal_ops(path) == ["accept", "settle", "accept", "settle"]


async def test_a_closed_journal_refuses_the_submit_and_frees_the_id(make: Make) -> None:
    venue = make()
    venue.start()
    await venue.ledger.aclose()  # the journal goes away under a venue still serving
    order = cid()
    with pytest.raises(VenueUnavailable, match="ledger closed: not accepted"):
        await venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
    assert venue.order_ids.owner(order) is None and venue.ledger_count(order) == 0


async def test_settle_now_settles_a_pending_swap_once_before_its_time(make: Make) -> None:
    clock = ManualClock()
    venue = make(clock=clock, execution_latency_s=3600.0)
    order = cid()
    await venue.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
    venue.settle_now(order)
    assert (await venue.wait_settled(order)).state == "confirmed"
    clock.advance(3600.0)  # the original due time comes and finds it settled
    for _ in range(1000):  # the settlement task pops it within a few loop turns
        if venue.pending_count == 0:
            break
        await asyncio.sleep(0)
    assert venue.pending_count == 0 and venue.ledger.settlements(order) == 1
