"""The venue's market data: walk steps, swaps and listings become pool states, coalesced per window;
reproducible with a seed; a listing is journaled and survives a restart. Time is a `ManualClock`, the
journal a real file; the sink is a list (the Kafka sink is exercised in the integration tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from events.market import AnyMarketEvent, PoolListed, PoolPriced, decode_market, encode_market
from services.venue.clock import ManualClock
from services.venue.interface import VenueRejected
from services.venue.ledger import Ledger
from services.venue.market import MarketFeed
from services.venue.pool import METEORA, RAYDIUM
from services.venue.simulator import SimulatedVenue

TOKENS = ("SOL", "USDC", "ETH", "USDT")


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[AnyMarketEvent]] = []
        self.down = False

    async def start(self) -> None:
        return None

    async def send(self, events: Sequence[AnyMarketEvent]) -> None:
        if self.down:
            raise ConnectionError("broker away")
        self.batches.append(list(events))

    async def stop(self) -> None:
        return None

    @property
    def events(self) -> list[AnyMarketEvent]:
        return [e for batch in self.batches for e in batch]


def venue(seed: int = 11, clock: ManualClock | None = None, **kwargs: object) -> SimulatedVenue:
    return SimulatedVenue(
        "raydium", RAYDIUM, TOKENS, seed=seed, clock=clock or ManualClock(), execution_latency_s=0.0, **kwargs
    )  # type: ignore[arg-type]


async def walk(seed: int, steps: int = 5) -> list[bytes]:
    """Every event a seeded venue publishes over `steps` walk steps one second apart."""
    clock = ManualClock()
    v = venue(seed, clock)
    sink = ListSink()
    feed = MarketFeed(sink, seed=seed)
    feed.attach([v])
    for _ in range(steps):
        clock.advance(1.0)
        v.step_walk()
        await feed.flush()
    await v.aclose()
    return [encode_market(e) for e in sink.events]


async def test_the_walk_is_published_and_reproducible_with_the_seed() -> None:
    first, again, other = await walk(11), await walk(11), await walk(12)
    assert len(first) == 5 * 6, "six pools, one state each per step"
    assert first == again, "same seed, same clock: the same market data, byte for byte"
    assert first != other
    events = [decode_market(raw) for raw in first]
    assert all(isinstance(e, PoolPriced) and e.cause == "walk" and e.venue == "raydium" for e in events)
    sol = [e.pool for e in events if e.pair == "SOL/USDC"]
    assert len({p.reserve_b / p.reserve_a for p in sol}) == 5, "the price moves every step"
    assert all(p.reserve_a * p.reserve_b == pytest.approx(sol[0].reserve_a * sol[0].reserve_b) for p in sol)


async def test_changes_within_a_window_are_coalesced_to_the_latest_per_pool() -> None:
    clock = ManualClock()
    v = venue(clock=clock)
    sink = ListSink()
    feed = MarketFeed(sink)
    feed.attach([v])
    for _ in range(20):
        clock.advance(0.01)
        v.step_walk()
    assert feed.pending == 6, "one entry per pool, however often it moved"
    assert await feed.flush() == 6
    latest = v.pools.peek("SOL", "USDC")
    sol = next(e for e in sink.events if e.pair == "SOL/USDC")
    assert (sol.pool.reserve_a, sol.pool.reserve_b) == (latest.reserve_a, latest.reserve_b)
    assert await feed.flush() == 0, "nothing moved since"
    await v.aclose()


async def test_a_swap_publishes_the_pool_it_moved_with_its_fee() -> None:
    clock = ManualClock()
    v = venue(clock=clock)
    sink = ListSink()
    feed = MarketFeed(sink)
    feed.attach([v])
    before = v.pools.peek("SOL", "USDC").mid("SOL", "USDC")
    await v.submit("order-big-sell", "SOL", "USDC", "sell", 2_000.0, 1.0)
    await v.wait_settled("order-big-sell")
    await feed.flush()
    (event,) = sink.events
    assert isinstance(event, PoolPriced) and (event.cause, event.pair) == ("swap", "SOL/USDC")
    after = event.pool.reserve_b / event.pool.reserve_a
    assert after < before * 0.9, "a 2,000 SOL sell pushes the price down"
    assert event.pool.fee_bps == v.pools.peek("SOL", "USDC").fee_bps
    # The published state prices the next swap exactly as the venue quotes it.
    quote = await v.quote("SOL", "USDC", "sell", 10.0)
    assert event.pool.price("SOL", "USDC", "sell", 10.0) == pytest.approx(quote.price)
    await v.aclose()


async def test_a_listing_is_published_journaled_and_listed_again_after_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = tmp_path / "ledger.jsonl"
    v = venue(clock=clock, ledger=Ledger(journal))
    sink = ListSink()
    feed = MarketFeed(sink)
    feed.attach([v])
    state = await v.list_pool("BONK", "USDC", 4e9, 100_000.0)
    assert (state.token_a, state.token_b, state.reserve_a, state.reserve_b) == ("BONK", "USDC", 4e9, 1e5)
    clock.advance(0.01)
    v.step_walk()  # moves within the same window: still published as the listing, in its latest state
    await feed.flush()
    listed = next(e for e in sink.events if e.pair == "BONK/USDC")
    assert isinstance(listed, PoolListed) and listed.cause == "listing"
    quote = await v.quote("BONK", "USDC", "buy", 100.0)
    assert quote.price == pytest.approx(100_000 / 4e9 / (1 - 0.0025), rel=3e-3)  # + impact, drift
    with pytest.raises(VenueRejected, match="listed already"):
        await v.list_pool("USDC", "BONK", 1.0, 1.0)
    await v.aclose()

    again = venue(clock=clock, ledger=Ledger(journal))
    assert again.pools.lists("BONK", "USDC"), "the journaled listing is listed again at start"
    assert (await again.quote("BONK", "USDC", "buy", 100.0)).price == pytest.approx(quote.price, rel=3e-3)
    await again.aclose()


@pytest.mark.parametrize(
    ("base", "quote", "base_reserve", "quote_reserve", "reason"),
    [
        ("bonk", "USDC", 1.0, 1.0, "base must be"),
        ("BONK", "BONK", 1.0, 1.0, "must differ"),
        ("BONK", "USDC", 0.0, 1.0, "base_reserve"),
        ("BONK", "USDC", 1.0, float("inf"), "quote_reserve"),
        ("SOL", "USDC", 1.0, 1.0, "listed already"),
    ],
)
async def test_a_bad_listing_is_refused(
    base: str, quote: str, base_reserve: float, quote_reserve: float, reason: str
) -> None:
    v = venue()
    with pytest.raises(VenueRejected, match=reason):
        await v.list_pool(base, quote, base_reserve, quote_reserve)
    await v.aclose()


async def test_a_venue_lists_a_bounded_number_of_pools() -> None:
    v = venue(max_pools=7)  # six pairs of four tokens, and room for one more
    await v.list_pool("BONK", "USDC", 1e9, 1e5)
    with pytest.raises(VenueRejected, match="7 pools listed already"):
        await v.list_pool("WIF", "USDC", 1e9, 1e5)
    await v.aclose()


async def test_a_window_the_broker_refused_is_published_later_in_its_latest_state() -> None:
    clock = ManualClock()
    v = SimulatedVenue("meteora", METEORA, TOKENS, seed=3, clock=clock)
    sink = ListSink()
    feed = MarketFeed(sink)
    feed.attach([v])
    await v.list_pool("BONK", "USDC", 4e9, 100_000.0)
    sink.down = True
    assert await feed.flush() == 0 and feed.failures == 1
    assert feed.pending == 1, "kept for the next window"
    clock.advance(1.0)
    v.step_walk()
    sink.down = False
    assert await feed.flush() == 7
    bonk = [e for e in sink.events if e.pair == "BONK/USDC"]
    assert len(bonk) == 1 and isinstance(bonk[0], PoolListed), "the listing is not lost, nor sent twice"
    await v.aclose()


async def test_the_venue_server_publishes_its_walk_and_listings_to_its_sink() -> None:
    import aiohttp

    from services.venue.server import create_app
    from tests.router_fakes import until
    from tests.venue_harness import serving, simulated

    sink = ListSink()
    async with simulated() as sims:
        app = create_app(sims, market=sink, tick_s=0.05, market_window_s=0.02)
        async with serving(app) as url, aiohttp.ClientSession() as http:
            await until(lambda: len(sink.events) >= 24, 10, "two walk steps of both venues' six pools")
            listing = {"base": "BONK", "quote": "USDC", "base_reserve": 4e9, "quote_reserve": 1e5}
            async with http.post(f"{url}/venues/raydium/pools", json=listing) as reply:
                assert reply.status == 201
            await until(lambda: any(isinstance(e, PoolListed) for e in sink.events), 10, "the listing")
    assert {e.venue for e in sink.events} == {"raydium", "meteora"}
    listed = [e for e in sink.events if isinstance(e, PoolListed)]
    assert [(e.venue, e.pair) for e in listed] == [("raydium", "BONK/USDC")]
