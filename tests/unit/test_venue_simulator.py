"""The simulated venue: idempotent ledger, settlement after latency, slippage at execution, faults.

Time is a `ManualClock` (or zero latency): tests advance it and await settlements, they never sleep.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.router.routing import choose_route, min_acceptable_price
from services.venue.clock import ManualClock
from services.venue.interface import (
    SubmitOutcomeUnknown,
    SwapStatus,
    Venue,
    VenueRejected,
    VenueUnavailable,
)
from services.venue.ledger import Ledger
from services.venue.pool import METEORA, RAYDIUM
from services.venue.simulator import PoolChange, SimulatedVenue

TOKENS = ("SOL", "USDC", "ETH", "USDT")
MakeVenue = Callable[..., SimulatedVenue]


@pytest.fixture
async def make_venue() -> AsyncIterator[MakeVenue]:
    made: list[SimulatedVenue] = []

    def make(name: str = "raydium", **kwargs: Any) -> SimulatedVenue:
        kwargs.setdefault("seed", 11)
        kwargs.setdefault("clock", ManualClock())
        venue = SimulatedVenue(name, RAYDIUM if name == "raydium" else METEORA, TOKENS, **kwargs)
        made.append(venue)
        return venue

    yield make
    for venue in made:
        await venue.aclose()


def cid() -> str:
    return f"order-{uuid.uuid4()}"


async def test_it_implements_the_venue_interface(make_venue: MakeVenue) -> None:
    venue = make_venue()
    assert isinstance(venue, Venue)
    quote = await venue.quote("SOL", "USDC", "sell", 2.0)
    assert (quote.venue, quote.base, quote.quote, quote.side, quote.amount_in) == (
        "raydium",
        "SOL",
        "USDC",
        "sell",
        2.0,
    )
    assert quote.amount_out == pytest.approx(quote.price * 2.0)
    assert quote.fee_bps == 25.0 and quote.price_impact_bps > 0 and quote.quoted_at.tzinfo == UTC
    buy = await venue.quote("SOL", "USDC", "buy", 300.0)
    assert buy.amount_out == pytest.approx(300.0 / buy.price) and buy.price > quote.price


async def test_either_venue_wins_depending_on_size_and_drift(make_venue: MakeVenue) -> None:
    raydium, meteora = make_venue("raydium"), make_venue("meteora")
    for venue in (raydium, meteora):
        venue.pools.pool("SOL", "USDC", 0.0).shift(0.0)  # both at the reference price

    async def winner(side: str, amount: float) -> str:
        quotes = [await v.quote("SOL", "USDC", side, amount) for v in (raydium, meteora)]  # type: ignore[arg-type]
        return choose_route(quotes, side).venue  # type: ignore[arg-type]

    assert await winner("sell", 1.0) == "meteora"  # lower fee
    assert await winner("sell", 100.0) == "raydium"  # deeper pool
    assert await winner("buy", 150.0) == "meteora"
    assert await winner("buy", 15_000.0) == "raydium"
    raydium.pools.pool("SOL", "USDC", 0.0).shift(0.002)  # Raydium drifts 20 bps up: it now wins small sells
    assert await winner("sell", 1.0) == "raydium"
    assert await winner("buy", 150.0) == "meteora"


async def test_across_seeds_drift_alone_gives_each_venue_small_orders(make_venue: MakeVenue) -> None:
    wins = {"raydium": 0, "meteora": 0}
    for seed in range(40):
        venues = [make_venue(name, seed=seed) for name in ("raydium", "meteora")]
        quotes = [await v.quote("SOL", "USDC", "sell", 1.0) for v in venues]
        wins[choose_route(quotes, "sell").venue] += 1
    assert wins["raydium"] >= 5 and wins["meteora"] >= 5, wins


async def test_submit_accepts_at_once_and_settles_after_the_latency(make_venue: MakeVenue) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, execution_latency_s=(2.0, 3.0))
    order = cid()
    assert (await venue.status(order)).state == "unknown"
    quote = await venue.quote("SOL", "USDC", "sell", 1.0)
    receipt = await venue.submit(
        order, "SOL", "USDC", "sell", 1.0, min_acceptable_price(quote.price, "sell", 100)
    )
    assert receipt.client_order_id == order and len(receipt.tx_hash) >= 80
    pending = await venue.status(order)
    assert (pending.state, pending.tx_hash, pending.terminal) == ("pending", receipt.tx_hash, False)
    clock.advance(1.9)
    await asyncio.sleep(0)  # let the settlement task look (no time passes)
    assert (await venue.status(order)).state == "pending"
    clock.advance(1.2)
    confirmed = await venue.wait_settled(order)
    assert confirmed == await venue.status(order)
    assert confirmed.state == "confirmed" and confirmed.tx_hash == receipt.tx_hash
    assert confirmed.executed_price is not None and confirmed.amount_out is not None
    # Priced at settlement: the pool drifted for ~3 s, so close to the quote but not equal.
    assert confirmed.executed_price == pytest.approx(quote.price, rel=0.002)
    assert confirmed.executed_price != quote.price
    assert confirmed.amount_out == pytest.approx(confirmed.executed_price)


async def test_submit_is_idempotent_by_client_order_id(make_venue: MakeVenue) -> None:
    venue = make_venue(execution_latency_s=0.0)
    order = cid()
    first = await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    again = await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    assert first == again
    status = await venue.wait_settled(order)
    assert await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0) == first  # after settling too
    assert venue.ledger_count(order) == 1 and venue.ledger.settlements(order) == 1
    assert status.amount_out == pytest.approx(status.executed_price)  # 1 SOL, not 5


async def test_a_hundred_concurrent_duplicates_execute_once(make_venue: MakeVenue) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, quote_latency_s=(0.01, 0.5), execution_latency_s=1.0)
    order = cid()
    tasks = [
        asyncio.create_task(venue.submit(order, "SOL", "USDC", "buy", 150.0, 1000.0)) for _ in range(100)
    ]
    await clock.wait_for_sleepers(100)  # every submit is now in flight, waiting on its own latency
    clock.advance(0.5)
    receipts = await asyncio.gather(*tasks)
    assert len({r.tx_hash for r in receipts}) == 1 and len(set(receipts)) == 1
    assert venue.ledger_count(order) == 1 and venue.pending_count == 1
    clock.advance(1.0)
    assert (await venue.wait_settled(order)).state == "confirmed"
    assert venue.ledger.settlements(order) == 1 and len(venue.ledger) == 1


@pytest.mark.parametrize(
    ("side", "amount", "factor", "op"), [("sell", 1.0, 1.01, "<"), ("buy", 150.0, 0.99, ">")]
)
async def test_slippage_beyond_the_limit_fails_the_swap_with_the_numbers(
    make_venue: MakeVenue, side: str, amount: float, factor: float, op: str
) -> None:
    venue = make_venue(execution_latency_s=0.0)
    quote = await venue.quote("SOL", "USDC", side, amount)  # type: ignore[arg-type]
    limit = quote.price * factor  # better than the market can give
    pool = venue.pools.pool("SOL", "USDC", 0.0)
    reserves = (pool.reserve_a, pool.reserve_b)
    order = cid()
    await venue.submit(order, "SOL", "USDC", side, amount, limit)  # type: ignore[arg-type]
    failed = await venue.wait_settled(order)
    assert failed.state == "failed" and failed.executed_price is None and failed.amount_out is None
    assert failed.reason == f"slippage exceeded: executed {quote.price:.8g} {op} limit {limit:.8g}"
    assert (pool.reserve_a, pool.reserve_b) == reserves  # nothing executed


async def test_a_confirmed_swap_moves_the_pool(make_venue: MakeVenue) -> None:
    venue = make_venue(execution_latency_s=0.0)
    before = await venue.quote("SOL", "USDC", "sell", 1.0)
    order = cid()
    await venue.submit(order, "SOL", "USDC", "sell", 500.0, 1.0)
    assert (await venue.wait_settled(order)).state == "confirmed"
    after = await venue.quote("SOL", "USDC", "sell", 1.0)
    assert after.price < before.price * 0.99  # 500 SOL sold into a $4M pool


async def test_failure_rate_one_serves_nothing(make_venue: MakeVenue) -> None:
    venue = make_venue(failure_rate=1.0)
    with pytest.raises(VenueUnavailable):
        await venue.quote("SOL", "USDC", "sell", 1.0)
    order = cid()
    with pytest.raises(VenueUnavailable):
        await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    assert venue.ledger_count(order) == 0 and (await venue.status(order)).state == "unknown"


async def test_execution_failures_settle_failed_with_a_venue_error(make_venue: MakeVenue) -> None:
    venue = make_venue(execution_failure_rate=1.0, execution_latency_s=0.0)
    order = cid()
    await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    failed = await venue.wait_settled(order)
    assert (
        failed.state == "failed" and failed.reason is not None and failed.reason.startswith("venue error: ")
    )


async def test_a_lost_reply_is_reconciled_by_status_not_by_a_new_swap(make_venue: MakeVenue) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, drop_reply_rate=1.0, execution_latency_s=2.0)
    order = cid()
    with pytest.raises(SubmitOutcomeUnknown):
        await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    assert (await venue.status(order)).state == "pending"  # it was accepted all the same
    clock.advance(2.0)
    assert (await venue.wait_settled(order)).state == "confirmed"
    assert venue.ledger_count(order) == 1


async def test_delayed_visibility_then_the_same_id_is_safe_to_resubmit(make_venue: MakeVenue) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, status_delay_s=1.0, execution_latency_s=5.0)
    order = cid()
    receipt = await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0)
    assert (await venue.status(order)).state == "unknown"  # not visible yet
    assert await venue.submit(order, "SOL", "USDC", "sell", 1.0, 100.0) == receipt
    clock.advance(1.0)
    assert (await venue.status(order)).state == "pending"
    assert venue.ledger_count(order) == 1


async def test_status_many_answers_in_order(make_venue: MakeVenue) -> None:
    venue = make_venue(execution_latency_s=0.0)
    done, bad, never = cid(), cid(), cid()
    await venue.submit(done, "SOL", "USDC", "sell", 1.0, 1.0)
    await venue.submit(bad, "SOL", "USDC", "sell", 1.0, 1e9)
    await venue.wait_settled(done)
    await venue.wait_settled(bad)
    states = [s.state for s in await venue.status_many([bad, never, done])]
    assert states == ["failed", "unknown", "confirmed"]


async def test_on_settled_notifies_without_polling(make_venue: MakeVenue) -> None:
    venue = make_venue(execution_latency_s=0.0)
    seen: list[SwapStatus] = []
    unsubscribe = venue.on_settled(seen.append)
    first, second = cid(), cid()
    await venue.submit(first, "ETH", "USDT", "buy", 3000.0, 1e6)
    await venue.wait_settled(first)
    unsubscribe()
    await venue.submit(second, "ETH", "USDT", "buy", 3000.0, 1e6)
    await venue.wait_settled(second)
    assert [s.client_order_id for s in seen] == [first]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("SOL", "BONK", "sell", 1.0), "not listed"),
        (("SOL", "SOL", "sell", 1.0), "not listed"),
        (("SOL", "USDC", "hold", 1.0), "side"),
        (("SOL", "USDC", "sell", 0.0), "amount_in"),
        (("SOL", "USDC", "sell", float("nan")), "amount_in"),
    ],
)
async def test_invalid_requests_are_rejected(
    make_venue: MakeVenue, args: tuple[Any, ...], match: str
) -> None:
    venue = make_venue()
    with pytest.raises(VenueRejected, match=match):
        await venue.quote(*args)
    with pytest.raises(VenueRejected, match=match):
        await venue.submit(cid(), *args, 100.0)


async def test_same_seed_same_calls_same_outcomes(make_venue: MakeVenue) -> None:
    async def run(seed: int) -> list[tuple[Any, ...]]:
        clock = ManualClock()
        venue = make_venue(seed=seed, clock=clock, execution_latency_s=(2.0, 3.0))
        ids = [f"fixed-{i}" for i in range(20)]
        for i, order in enumerate(ids):
            await venue.submit(
                order,
                "SOL",
                "USDC",
                "sell" if i % 2 else "buy",
                1.0 if i % 2 else 150.0,
                1.0 if i % 2 else 1e6,
            )
            clock.advance(0.3)
        clock.advance(5.0)
        settled = [await venue.wait_settled(order) for order in ids]
        return [(s.tx_hash, s.executed_price, s.amount_out) for s in settled]

    assert await run(5) == await run(5)
    assert await run(5) != await run(6)


async def test_ten_thousand_pending_swaps_cost_one_task_and_settle_together(make_venue: MakeVenue) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, execution_latency_s=(2.0, 3.0))
    tasks_before = len(asyncio.all_tasks())
    ids = [cid() for _ in range(10_000)]
    for order in ids[:9_000]:
        await venue.submit(order, "USDC", "USDT", "sell", 10.0, 0.5)
    tracemalloc.start()  # sampled over the last 1,000 submits: tracing all 10,000 costs seconds
    for order in ids[9_000:]:
        await venue.submit(order, "USDC", "USDT", "sell", 10.0, 0.5)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_swap = held / 1_000  # heap entry + ledger record + receipt; the id strings were made before tracing
    print(f"\npending swap: {per_swap:.0f} B each, ~{per_swap * 10_000 / 1e6:.1f} MB for 10,000")
    assert venue.pending_count == 10_000
    assert len(asyncio.all_tasks()) - tasks_before <= 3  # the settlement task and its two waiters
    done = asyncio.Event()
    settled: list[SwapStatus] = []
    venue.on_settled(lambda s: (settled.append(s), len(settled) == len(ids) and done.set()))
    clock.advance(3.0)
    await done.wait()
    assert all(s.state == "confirmed" for s in settled) and venue.pending_count == 0


async def test_ten_thousand_swaps_at_zero_latency_settle_quickly(make_venue: MakeVenue) -> None:
    """Prints the measured figures (run with -s); speed is reported, never asserted."""
    from services.venue.clock import SystemClock

    venue = make_venue(clock=SystemClock(), execution_latency_s=0.0)
    ids = [cid() for _ in range(10_000)]
    done = asyncio.Event()
    count = 0

    def on_settled(status: SwapStatus) -> None:
        nonlocal count
        count += 1
        if count == len(ids):
            done.set()

    venue.on_settled(on_settled)
    started = time.perf_counter()
    for order in ids:
        await venue.submit(order, "SOL", "USDC", "sell", 0.01, 1.0)
    submitted = time.perf_counter()
    await done.wait()
    finished = time.perf_counter()
    statuses = await venue.status_many(ids)
    assert all(s.state == "confirmed" for s in statuses)
    assert len(venue.ledger) == 10_000 and venue.ledger.max_entries() == 1
    print(
        f"\n10,000 swaps: submit {submitted - started:.3f} s, settle {finished - submitted:.3f} s, "
        f"total {finished - started:.3f} s"
    )


async def test_the_journal_keeps_the_ledger_across_a_venue_restart(tmp_path: Path) -> None:
    journal = tmp_path / "ledger-raydium.jsonl"
    clock = ManualClock()
    first = SimulatedVenue(
        "raydium", RAYDIUM, TOKENS, seed=1, clock=clock, execution_latency_s=1.0, ledger=Ledger(journal)
    )
    settled, pending = cid(), cid()
    receipt = await first.submit(settled, "SOL", "USDC", "sell", 1.0, 1.0)
    clock.advance(1.0)
    before = await first.wait_settled(settled)
    await first.submit(pending, "SOL", "USDC", "sell", 1.0, 1.0)
    await first.aclose()  # the venue process goes away with one swap still pending

    second = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=1, clock=clock, ledger=Ledger(journal))
    try:
        assert await second.status(settled) == before
        assert await second.submit(settled, "SOL", "USDC", "sell", 1.0, 1.0) == receipt
        second.start()
        assert (await second.wait_settled(pending)).state == "confirmed"
        assert second.ledger_count(settled) == 1 and second.ledger_count(pending) == 1
    finally:
        await second.aclose()


async def test_a_closed_venue_refuses_submits(make_venue: MakeVenue) -> None:
    venue = make_venue()
    await venue.aclose()
    with pytest.raises(VenueUnavailable):
        await venue.submit(cid(), "SOL", "USDC", "sell", 1.0, 100.0)


@pytest.mark.parametrize("amount", [1e20, 1e60, 1e150])
async def test_a_huge_buy_is_rejected_with_the_limit_and_moves_nothing(
    make_venue: MakeVenue, amount: float
) -> None:
    venue = make_venue(execution_latency_s=0.0)
    published: list[PoolChange] = []
    venue.on_market(published.append)
    pool = venue.pools.peek("ETH", "USDT")
    before = (pool.reserve_a, pool.reserve_b)
    with pytest.raises(VenueRejected, match=r"price impact .* is over the 15 % limit") as quoted:
        await venue.quote("ETH", "USDT", "buy", amount)
    assert "at most" in str(quoted.value) and "USDT now" in str(quoted.value)
    with pytest.raises(VenueRejected, match="over the 15 % limit"):
        await venue.submit(cid(), "ETH", "USDT", "buy", amount, 1e300)
    assert len(venue.ledger) == 0 and venue.pending_count == 0  # nothing accepted, nothing scheduled
    assert (pool.reserve_a, pool.reserve_b) == before
    venue.step_walk()  # the ticker after a rejection publishes pools nobody broke
    assert published and all(c.pool.reserve_a > 0 and c.pool.reserve_b > 0 for c in published)
    sold = cid()  # the Postman collection's "Different Token Pair" order, right after
    quote = await venue.quote("ETH", "USDT", "sell", 0.5)
    await venue.submit(sold, "ETH", "USDT", "sell", 0.5, min_acceptable_price(quote.price, "sell", 200))
    confirmed = await venue.wait_settled(sold)
    assert confirmed.state == "confirmed" and confirmed.executed_price == pytest.approx(3000, rel=0.01)


async def test_a_swap_within_the_limit_at_submit_but_beyond_it_at_settlement_fails_unapplied(
    make_venue: MakeVenue,
) -> None:
    clock = ManualClock()
    venue = make_venue(clock=clock, execution_latency_s=1.0)
    pool = venue.pools.peek("SOL", "USDC")
    fee = 1 - pool.fee_bps / 1e4
    buy = pool.reserve_b * 0.14 / 0.86 / fee  # USDC taking 14 % of the SOL
    sell = pool.reserve_a * 0.149 / 0.851 / fee  # SOL taking 14.9 % of the USDC: over 15 % after the buy
    usdc = pool.reserve_b
    first, second = cid(), cid()
    await venue.submit(first, "SOL", "USDC", "buy", buy, 1e9)
    await venue.submit(second, "SOL", "USDC", "sell", sell, 1e-9)  # both due together: one batch
    clock.advance(1.0)
    bought, refused = await venue.wait_settled(first), await venue.wait_settled(second)
    assert bought.state == "confirmed"
    assert refused.state == "failed" and refused.amount_out is None
    assert refused.reason is not None and refused.reason.startswith("rejected: price impact")
    assert "over the 15 % limit" in refused.reason
    assert pool.reserve_b == pytest.approx(usdc + buy, rel=0.01)  # moved by the buy alone (and drift)
    assert pool.mid("SOL", "USDC") > 150 * 1.3


async def test_a_journal_that_drained_a_pool_before_the_bounds_does_not_break_the_pair(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "ledger-raydium.jsonl"
    clock = ManualClock()
    first = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=1, clock=clock, ledger=Ledger(journal))
    drained = cid()
    await first.submit(drained, "ETH", "USDT", "buy", 1000.0, 1e9)
    clock.advance(3.0)
    assert (await first.wait_settled(drained)).state == "confirmed"
    await first.aclose()
    # What the venue journaled before the bounds after 1e150 USDT bought ETH: no ETH left.
    lines = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    settle = next(line for line in lines if line["op"] == "settle")
    settle["pool"] |= {"reserve_a": 0.0, "reserve_b": 1e150}
    journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))

    second = SimulatedVenue(
        "raydium", RAYDIUM, TOKENS, seed=1, clock=clock, execution_latency_s=0.0, ledger=Ledger(journal)
    )
    try:
        assert "ETH/USDT state (0.0, 1e+150) cannot be priced: not restored" in caplog.text
        assert (await second.status(drained)).state == "confirmed"  # history stands; the pool does not
        published: list[PoolChange] = []
        second.on_market(published.append)
        clock.advance(1.0)
        assert second.step_walk() == 6 and len(published) == 6  # every pair walks: no math domain error
        quote = await second.quote("ETH", "USDT", "sell", 0.5)
        assert quote.price == pytest.approx(3000, rel=0.01)
        sold = cid()
        await second.submit(sold, "ETH", "USDT", "sell", 0.5, min_acceptable_price(quote.price, "sell", 200))
        assert (await second.wait_settled(sold)).state == "confirmed"
    finally:
        await second.aclose()
