"""Limit and sniper orders as they run: `oee venue` publishing its pools' states, `oee router` and `oee
triggers` as subprocesses on the real broker. The test moves the market the way a market moves, with large
swaps at the venue, and reads back the market data and the order log: each order fires once, at the first
market event since it opened whose executable price for its size reaches its limit, and never fills worse
than its limit, also when the trigger engine is SIGKILLed between a market event and its trigger."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from events.envelope import Event
from events.lifecycle import fold
from events.market import AnyMarketEvent, PoolState, decode_market
from events.topics import Topics
from events.types import OrderOpened, OrderRequested, OrderTriggered
from services.config import Settings
from tests.e2e.harness import LogReader, Proc, free_port, produce, service, stop_all, wait_http, wait_log
from tests.samples import limit_request, sniper_request

pytestmark = pytest.mark.e2e

ENDED = ("confirmed", "failed", "expired", "cancelled")


@dataclasses.dataclass
class System:
    settings: Settings
    topics: Topics
    venue: Proc
    router: Proc
    triggers: Proc
    venue_url: str
    tmp: Path

    @property
    def procs(self) -> list[Proc]:
        return [self.venue, self.router, self.triggers]

    async def restart_triggers(self) -> None:
        self.triggers = service("triggers", self.settings, self.tmp, dict(self.triggers.env)).start()
        await wait_log(self.triggers, "trigger engine ready", timeout=60)

    async def swap(self, venue: str, side: str, amount: float, tag: str) -> None:
        """A large market swap straight at the venue (another trader moving the market)."""
        limit = 1e-9 if side == "sell" else 1e12
        body = {"client_order_id": f"mover-{tag}", "base": "SOL", "quote": "USDC", "side": side,
                "amount_in": amount, "limit_price": limit}  # fmt: skip
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"{self.venue_url}/venues/{venue}/submit", json=body, timeout=10)
            assert reply.status_code == 200, reply.text

    async def price(self, side: str = "sell", amount: float = 1.0) -> float:
        body = {"base": "SOL", "quote": "USDC", "side": side, "amount_in": amount}
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"{self.venue_url}/venues/raydium/quote", json=body, timeout=10)
            return float(reply.json()["price"])


Start = Callable[..., Awaitable[System]]


@pytest.fixture
async def start(infra: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[System] = []
    prefix = topics.events.removesuffix("orders.events")
    settings = dataclasses.replace(infra, topic_prefix=prefix)

    async def _start() -> System:
        port = free_port()
        env = {
            "VENUE_PORT": str(port), "VENUE_SEED": "17", "VENUE_EXEC_LATENCY_MS": "100",
            "VENUE_TICK_MS": "200", "VENUE_MARKET_DATA_MS": "50",
            "ROUTER_METRICS_PORT": "0", "TRIGGERS_METRICS_PORT": "0", "TRIGGERS_INSTANCE_ID": "e2e",
        }  # fmt: skip
        venue = service("venue", settings, tmp_path, env).start()
        url = f"http://127.0.0.1:{port}"
        router = service("router", settings, tmp_path, dict(env, VENUE_URL=url)).start()
        triggers = service("triggers", settings, tmp_path, env).start()
        system = System(settings, topics, venue, router, triggers, url, tmp_path)
        started.append(system)
        await wait_http(f"{url}/health", venue)
        await wait_log(router, "partition assigned", count=3)
        await wait_log(triggers, "trigger engine ready", timeout=60)
        await wait_log(triggers, "reading market data", timeout=60)
        return system

    yield _start
    stop_all(proc for system in started for proc in system.procs)


class Market:
    """The market-data topic as the test reads it back: every event, in order per pair."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self.events: list[AnyMarketEvent] = []

    async def __aenter__(self) -> Market:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def read(self) -> None:
        for rows in (await self.consumer.getmany(timeout_ms=200)).values():
            self.events.extend(decode_market(r.value) for r in rows if r.value)

    async def wait_for(self, done: Callable[[list[AnyMarketEvent]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for market data: {what}")
            await self.read()

    def mid(self, venue: str) -> float | None:
        """The latest SOL/USDC price of `venue`, quote per base, fee aside."""
        pools = [e.pool for e in self.events if e.venue == venue and e.pair == "SOL/USDC"]
        return pools[-1].reserve_b / pools[-1].reserve_a if pools else None

    def first_crossing(self, order: OrderRequested, opened: OrderOpened) -> AnyMarketEvent | None:
        """The first event since `opened` after which the best venue's executable price for the order's size
        reaches its limit (the engine's rule, recomputed from the published states)."""
        d = order.data
        pools: dict[str, PoolState] = {}
        for event in self.events:
            if event.pair != "SOL/USDC":
                continue
            pools[event.venue] = event.pool
            if event.occurred_at < opened.occurred_at:
                continue
            prices = [p.price(d.base_token, d.quote_token, d.side, d.amount_in) for p in pools.values()]
            best = max(prices) if d.side == "sell" else min(prices)
            assert d.limit_price is not None
            if (best >= d.limit_price) if d.side == "sell" else (best <= d.limit_price):
                return event
        return None


def status(log: LogReader, order: OrderRequested) -> str | None:
    state = fold(log.by_order.get(order.order_id, []))
    return None if state is None else state.status


def of(log: LogReader, order: OrderRequested, kind: type[Event]) -> list[Event]:
    return [e for e in log.by_order.get(order.order_id, []) if isinstance(e, kind)]


def assert_filled_within_limit(log: LogReader, order: OrderRequested) -> None:
    events = log.by_order[order.order_id]
    assert events[-1].type == "OrderConfirmed", [e.type for e in events]
    price, limit = events[-1].data.executed_price, order.data.limit_price  # type: ignore[attr-defined]
    assert limit is not None
    assert price <= limit if order.data.side == "buy" else price >= limit, (price, limit)


async def test_limit_orders_fire_at_the_first_crossing_and_fill_within_their_limit(
    start: Start, infra: Settings
) -> None:
    system = await start()
    mid = await system.price()
    buy = limit_request("buy", limit=round(mid * 0.93, 4), amount=300.0)  # spend 300 USDC below the market
    sell = limit_request("sell", limit=round(mid * 1.07, 4), amount=2.0)  # sell 2 SOL above it
    async with (
        LogReader(infra.bootstrap_servers, system.topics.events) as log,
        Market(infra.bootstrap_servers, system.topics.market_data) as market,
    ):
        await produce(infra.bootstrap_servers, system.topics.requests, [buy, sell])
        await log.wait_for(
            lambda lg: all(of(lg, o, OrderOpened) for o in (buy, sell)), 30, "both rest", system.procs
        )
        opened_at = of(log, buy, OrderOpened)[0].occurred_at
        await market.wait_for(
            lambda events: sum(1 for e in events if e.occurred_at > opened_at and e.pair == "SOL/USDC") >= 10,
            60,
            "ten states of the walk since they opened (nothing crosses)",
        )
        await log.poll()
        assert status(log, buy) == status(log, sell) == "open"
        # Sellers push SOL ~20 % down on both venues: the buy limit is reached, the sell limit is not.
        await system.swap("raydium", "sell", 3_150.0, "down-r")
        await system.swap("meteora", "sell", 1_180.0, "down-m")
        await log.wait_for(lambda lg: status(lg, buy) in ENDED, 60, "the buy fills", system.procs)
        assert status(log, sell) == "open"
        # Buyers push it ~40 % up from there, two swaps a venue (one swap may take at most 15 % of a pool's
        # reserve, decision 0030): the sell limit is reached.
        for half in ("1", "2"):
            await system.swap("raydium", "buy", 327_500.0, f"up-r{half}")
            await system.swap("meteora", "buy", 122_500.0, f"up-m{half}")
        await log.wait_for(lambda lg: status(lg, sell) in ENDED, 60, "the sell fills", system.procs)
        await log.settle(1.0)
        triggered_at = max(of(log, o, OrderTriggered)[0].data.market_at for o in (buy, sell))  # type: ignore[attr-defined]
        await market.wait_for(
            lambda events: any(e.pair == "SOL/USDC" and e.occurred_at >= triggered_at for e in events),
            30,
            "the crossing events",
        )
    for order in (buy, sell):
        (triggered,) = of(log, order, OrderTriggered)
        (opened,) = of(log, order, OrderOpened)
        first = market.first_crossing(order, opened)  # type: ignore[arg-type]
        assert first is not None and triggered.data.market_event_id == first.event_id  # type: ignore[attr-defined]
        assert_filled_within_limit(log, order)


async def test_sigkill_of_the_trigger_engine_between_ticks_and_triggers_loses_and_doubles_nothing(
    start: Start, infra: Settings
) -> None:
    system = await start()
    mid = await system.price()
    rng = random.Random(5)
    orders = [limit_request("sell", limit=round(mid * rng.uniform(1.02, 1.10), 4), amount=rng.uniform(0.5, 3)) for _ in range(30)]  # fmt: skip
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await produce(infra.bootstrap_servers, system.topics.requests, orders)
        await log.wait_for(
            lambda lg: all(of(lg, o, OrderOpened) for o in orders), 30, "all rest", system.procs
        )
        # Stopped, then killed, while the market crosses every limit: the crossing events are published and
        # not one of them handled by the engine that dies. (Whether it had read the new orders yet does not
        # matter: a restored order is checked against the market since it opened.)
        frozen = system.triggers.popen
        assert frozen is not None
        frozen.send_signal(signal.SIGSTOP)
        async with Market(infra.bootstrap_servers, system.topics.market_data) as market:
            await system.swap("raydium", "buy", 700_000.0, "up-r")
            await system.swap("meteora", "buy", 260_000.0, "up-m")
            # Both swaps settled and published while the engine is frozen (a walk step in the same window
            # may carry the moved state in the swap's place: the price is what tells).
            await market.wait_for(
                lambda _: all((market.mid(v) or 0) > mid * 1.25 for v in ("raydium", "meteora")),
                60,
                "both pools pushed up",
            )
        frozen.send_signal(signal.SIGKILL)
        frozen.wait(timeout=30)
        await system.restart_triggers()
        # Killed again at random moments while it fires them: every repeat is ignored by the owner.
        for _ in range(2):
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            system.triggers.kill(signal.SIGKILL)
            await system.restart_triggers()
        await log.wait_for(
            lambda lg: all(status(lg, o) in ENDED for o in orders), 120, "every order ends", system.procs
        )
        await log.settle(2.0)
    for order in orders:
        assert len(of(log, order, OrderTriggered)) == 1, [e.type for e in log.by_order[order.order_id]]
        assert_filled_within_limit(log, order)


async def test_a_sniper_fires_on_a_listing_made_at_the_venue(start: Start, infra: Settings) -> None:
    system = await start()
    sniper = sniper_request("BONK", amount=500.0, max_price=1e-4, min_liquidity=50_000.0)
    thin = sniper_request("BONK", amount=500.0, max_price=1e-4, min_liquidity=5_000_000.0)
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await produce(infra.bootstrap_servers, system.topics.requests, [sniper, thin])
        await log.wait_for(
            lambda lg: all(of(lg, o, OrderOpened) for o in (sniper, thin)), 30, "both rest", system.procs
        )
        listing = {"base": "BONK", "quote": "USDC", "base_reserve": 4e9, "quote_reserve": 100_000.0}
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"{system.venue_url}/venues/meteora/pools", json=listing, timeout=10)
            assert reply.status_code == 201, reply.text
        await log.wait_for(
            lambda lg: all(status(lg, o) in ENDED for o in (sniper, thin)), 60, "both end", system.procs
        )
    assert status(log, sniper) == "confirmed"
    (triggered,) = of(log, sniper, OrderTriggered)
    assert (triggered.data.trigger, triggered.data.venues) == ("listing", ["meteora"])  # type: ignore[attr-defined]
    assert log.by_order[sniper.order_id][-1].data.executed_price <= 1e-4  # type: ignore[attr-defined]
    failed = log.by_order[thin.order_id][-1]
    assert failed.type == "OrderFailed" and failed.data.stage == "trigger"  # type: ignore[attr-defined]
    assert "thin pool" in failed.data.reason  # type: ignore[attr-defined]
