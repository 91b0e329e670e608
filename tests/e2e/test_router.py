"""The router as it runs in production: `oee router` (a Faust worker) and `oee venue` as subprocesses,
against the real broker, on topics of this test's own."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from events.topics import DLQ_ERROR, DLQ_SOURCE_OFFSET, DLQ_SOURCE_TOPIC, Topics
from services.config import Settings
from tests.e2e.harness import (
    LogReader,
    Proc,
    assert_lifecycle,
    committed_offsets,
    free_port,
    produce,
    service,
    stop_all,
    wait_http,
    wait_log,
)
from tests.samples import order_request
from tests.waiting import until

pytestmark = pytest.mark.e2e

Start = Callable[..., Awaitable["System"]]


@dataclasses.dataclass
class System:
    settings: Settings
    topics: Topics
    venue: Proc
    router: Proc
    venue_url: str
    tmp: Path

    async def ledger(self, venue: str) -> dict:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.venue_url}/venues/{venue}/ledger?detail=1", timeout=5)).json()

    async def restart_router(self, sig: int | None = None) -> None:
        import signal as signals

        self.router.kill(sig or signals.SIGKILL)
        self.router = service("router", self.settings, self.tmp, dict(self.router.env)).start()
        await wait_log(self.router, "partition assigned", count=3)


@pytest.fixture
async def start(infra: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[System] = []
    prefix = topics.events.removesuffix("orders.events")
    settings = dataclasses.replace(infra, topic_prefix=prefix)

    async def _start(**venue_env: str) -> System:
        port = free_port()
        env = {"VENUE_PORT": str(port), "VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": "100"}
        env.update({k.upper(): v for k, v in venue_env.items()})
        venue = service("venue", settings, tmp_path, env).start()
        url = f"http://127.0.0.1:{port}"
        router_env = dict(env, VENUE_URL=url, ROUTER_BACKOFF_MS=env.get("ROUTER_BACKOFF_MS", "100,200"))
        router = service("router", settings, tmp_path, router_env).start()
        system = System(settings, topics, venue, router, url, tmp_path)
        started.append(system)
        await wait_http(f"{url}/health", venue)
        await wait_log(router, "partition assigned", count=3)
        return system

    yield _start
    stop_all(proc for system in started for proc in (system.router, system.venue))


async def test_buy_and_sell_take_the_best_quote_net_of_fees(start: Start, infra: Settings) -> None:
    system = await start()
    sell = order_request("sell", "SOL", "USDC", 2.0)
    buy = order_request("buy", "SOL", "USDC", 300.0)  # spend 300 USDC on SOL
    eth = order_request("sell", "ETH", "USDT", 0.5)
    await produce(infra.bootstrap_servers, system.topics.requests, [sell, buy, eth])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal(
            [sell.order_id, buy.order_id, eth.order_id], 60, [system.router, system.venue]
        )
        for order in (sell, buy, eth):
            events = log.by_order[order.order_id]
            assert [e.type for e in events] == [
                "OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderConfirmed",
            ]  # fmt: skip
            assert_lifecycle(events)
            assert events[0] == order, "the log opens with the request, unchanged"
            building, submitted, confirmed = events[2].data, events[3].data, events[4].data
            prices = {q.venue: q.price for q in building.quotes}
            assert set(prices) == {"raydium", "meteora"}
            best = max(prices, key=prices.get) if order.data.side == "sell" else min(prices, key=prices.get)  # type: ignore[arg-type]
            assert building.selected_venue == best == submitted.venue == confirmed.venue
            slip = order.data.slippage_bps / 10_000
            expected = prices[best] * (1 - slip if order.data.side == "sell" else 1 + slip)
            assert submitted.min_acceptable_price == pytest.approx(expected)
            if order.data.side == "sell":
                assert confirmed.executed_price >= submitted.min_acceptable_price
            else:
                assert confirmed.executed_price <= submitted.min_acceptable_price
        # The venue's own record agrees with the log: one swap per order, same tx hash.
        for order in (sell, buy, eth):
            venue = log.by_order[order.order_id][-1].data.venue
            ledger = await system.ledger(venue)
            assert ledger["swaps"][order.order_id]["tx_hash"] == log.by_order[order.order_id][-1].data.tx_hash


async def test_a_graceful_stop_ends_open_feeds_and_the_routers_own_work(
    start: Start, infra: Settings
) -> None:
    system = await start()
    order = order_request()
    await produce(infra.bootstrap_servers, system.topics.requests, [order])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([order.order_id], 60, [system.router, system.venue])
    # The router holds a settlement feed open on each venue: stopping the venue ends those streams at once
    # instead of waiting out uvicorn's graceful-shutdown timeout and cutting them.
    system.venue.stop()
    venue_log = system.venue.log.read_text(errors="replace")
    assert "Application shutdown complete" in venue_log, system.venue.tail()
    assert "graceful shutdown exceeded" not in venue_log, system.venue.tail()
    # The router stops its own loops and producers once Faust's consumer has stopped (nothing left pending
    # for the worker's exit to cancel or wait for).
    system.router.stop()
    router_log = system.router.log.read_text(errors="replace")
    assert "router stopped: loops ended" in router_log, system.router.tail()
    assert "Task was destroyed but it is pending" not in router_log, system.router.tail()
    assert "Traceback" not in router_log.split("router stopped")[-1], system.router.tail()


async def test_two_hundred_concurrent_orders_each_end_once(start: Start, infra: Settings) -> None:
    system = await start(venue_exec_latency_ms="50-400")
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 7) for i in range(200)]
    await produce(infra.bootstrap_servers, system.topics.requests, orders)
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([o.order_id for o in orders], 120, [system.router, system.venue])
        await log.settle(1.0)
        for order in orders:
            assert_lifecycle(log.by_order[order.order_id])
        assert set(log.by_order) == {o.order_id for o in orders}


async def test_a_duplicate_request_is_ignored(start: Start, infra: Settings) -> None:
    system = await start()
    order = order_request()
    await produce(infra.bootstrap_servers, system.topics.requests, [order, order])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([order.order_id], 60, [system.router])
        await produce(infra.bootstrap_servers, system.topics.requests, [order])  # again, after it finished
        later = order_request()
        await produce(infra.bootstrap_servers, system.topics.requests, [later])
        await log.wait_terminal([later.order_id], 60, [system.router])
        assert_lifecycle(log.by_order[order.order_id])
        assert len(log.by_order[order.order_id]) == 5


async def test_no_venue_quotes_three_attempts_then_failed(start: Start, infra: Settings) -> None:
    system = await start(venue_failure_rate="1")
    order = order_request()
    await produce(infra.bootstrap_servers, system.topics.requests, [order])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([order.order_id], 60, [system.router])
        events = log.by_order[order.order_id]
        assert_lifecycle(events)
        assert [e.type for e in events] == ["OrderRequested", "OrderRouting", "OrderFailed"]
        failed = events[-1].data
        assert failed.stage == "routing" and failed.attempts == 3
        assert "raydium" in failed.reason and "meteora" in failed.reason
        # The backoff (100 ms then 200 ms here) was waited out between attempts.
        assert (events[-1].occurred_at - events[1].occurred_at).total_seconds() >= 0.3


async def test_slippage_beyond_the_limit_fails_the_order(start: Start, infra: Settings) -> None:
    # The market moves 50 bps against every swap between quote and execution.
    system = await start(venue_adverse_move_bps="50")
    tight = order_request(slippage_bps=10)
    loose = order_request(slippage_bps=200)
    await produce(infra.bootstrap_servers, system.topics.requests, [tight, loose])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([tight.order_id, loose.order_id], 60, [system.router])
        failed = log.by_order[tight.order_id][-1]
        assert failed.type == "OrderFailed"
        assert failed.data.stage == "execution" and "slippage" in failed.data.reason
        assert log.by_order[loose.order_id][-1].type == "OrderConfirmed"


async def test_undecodable_intake_goes_to_dead_letters_and_the_rest_flows(
    start: Start, infra: Settings
) -> None:
    system = await start()
    first, second = order_request(), order_request()
    await produce(infra.bootstrap_servers, system.topics.requests, [first, b"{not json", second])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([first.order_id, second.order_id], 60, [system.router])
    consumer = AIOKafkaConsumer(
        system.topics.dead_letters,
        bootstrap_servers=infra.bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        batch = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    headers = dict(batch.headers)
    assert batch.value == b"{not json"
    assert headers[DLQ_SOURCE_TOPIC] == system.topics.requests.encode()
    assert int(headers[DLQ_SOURCE_OFFSET]) >= 0
    assert b"InvalidEvent" in headers[DLQ_ERROR]
    assert system.router.alive()


async def test_an_order_beyond_the_bounds_on_the_intake_fails_and_the_router_goes_on(
    start: Start, infra: Settings
) -> None:
    """The review's crash loop: requests of 1e308 and 1e306 written straight onto the intake (as a log from
    before the ingress checked the bounds holds them) end `failed` with the reason; the orders after them
    confirm; the router process is the one that started (it never stopped)."""
    system = await start()
    pid = system.router.pid
    huge_sell = order_request("sell", "SOL", "USDC", 1e308)
    huge_buy = order_request("buy", "ETH", "USDT", 1e306)
    after = [order_request(), order_request("buy", "ETH", "USDT", 100.0)]
    await produce(infra.bootstrap_servers, system.topics.requests, [huge_sell, huge_buy, *after])
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        ids = [o.order_id for o in (huge_sell, huge_buy, *after)]
        await log.wait_terminal(ids, 60, [system.router, system.venue])
        for order in (huge_sell, huge_buy):
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            assert [e.type for e in events] == ["OrderRequested", "OrderFailed"]
            failed = events[-1].data
            assert failed.stage == "routing" and failed.reason.startswith("out of bounds: amountIn 1e+30")
            assert "above its bound 1e+12" in failed.reason, failed.reason
        for order in after:
            assert log.by_order[order.order_id][-1].type == "OrderConfirmed"
    assert system.router.alive() and system.router.pid == pid
    assert "router stopping" not in system.router.log.read_text(errors="replace")


async def test_a_router_that_crashes_exits_70_with_its_traceback_logged_once(
    start: Start, infra: Settings
) -> None:
    """A failure that is not about one order (here its database refuses it: the database named does not
    exist, which no retry cures) stops the router with status 70, not 0, its traceback in the log once."""
    system = await start()
    system.router.stop()
    url = infra.database_url.rsplit("/", 1)[0] + "/oee_no_such_database"
    env = dict(system.router.env, DATABASE_URL=url)
    system.router = router = service("router", system.settings, system.tmp, env).start()
    assert router.popen is not None
    popen = router.popen
    await until(lambda: popen.poll() is not None, 60, "the crashed router to exit")
    text = router.log.read_text(errors="replace")
    assert router.popen.returncode == 70, text[-3000:]
    assert text.count("router stopping after a failure it cannot route around") == 1, text[-3000:]
    assert text.count("Traceback (most recent call last)") == 1, text[-3000:]
    assert "InvalidCatalogNameError" in text and "router exiting with status 70" in text


async def test_sigkill_mid_flight_every_order_ends_once_and_no_swap_runs_twice(
    start: Start, infra: Settings
) -> None:
    # Slow settlements and lost submit replies, so the kill lands with orders at every stage.
    system = await start(venue_exec_latency_ms="500-1500", venue_drop_reply_rate="0.2")
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 5) for i in range(200)]
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await produce(infra.bootstrap_servers, system.topics.requests, orders[:120])

        def some_submitted(reader: LogReader) -> bool:
            return sum(1 for evs in reader.by_order.values() if evs[-1].type == "OrderSubmitted") >= 30

        await log.wait_for(some_submitted, 60, "orders in flight", [system.router])
        await system.restart_router()  # SIGKILL, then a fresh process
        await produce(infra.bootstrap_servers, system.topics.requests, orders[120:])
        await log.wait_terminal([o.order_id for o in orders], 120, [system.router, system.venue])
        await log.settle(2.0)

        ledgers = {v: (await system.ledger(v))["swaps"] for v in ("raydium", "meteora")}
        for order in orders:
            events = log.by_order[order.order_id]
            assert_lifecycle(events)
            holders = [v for v, swaps in ledgers.items() if order.order_id in swaps]
            terminal = events[-1]
            if terminal.type == "OrderConfirmed":
                assert holders == [terminal.data.venue]
                assert ledgers[terminal.data.venue][order.order_id]["tx_hash"] == terminal.data.tx_hash
            else:
                # failed at execution: the venue says so too; never "failed" for a swap that filled
                assert terminal.data.stage == "execution"
                assert all(ledgers[v][order.order_id]["state"] == "failed" for v in holders)
            assert len(holders) <= 1, f"{order.order_id} executed on {holders}"
        # Each venue executed each client order id at most once.
        for swaps in ledgers.values():
            assert all(s["executions"] <= 1 for s in swaps.values())


async def test_an_order_in_processing_when_the_router_dies_is_not_skipped(
    start: Start, infra: Settings
) -> None:
    """faust-streaming issue 606: an offset committed past an event still being processed loses it."""
    system = await start(venue_quote_latency_ms="3000")
    slow = order_request()
    await produce(infra.bootstrap_servers, system.topics.requests, [slow])

    async def quoting() -> bool:
        return (await system.ledger("raydium"))["quotes_in_progress"] > 0

    async with asyncio.timeout(60):
        while not await quoting():
            await asyncio.sleep(0.05)
    system.router.kill()  # SIGKILL while the order's batch waits on the venue
    group = f"{system.settings.topic_prefix}oee-router"
    admin_offsets = await committed_offsets(infra.bootstrap_servers, group, system.topics.requests)
    assert all(offset <= 0 for offset in admin_offsets.values()), f"committed past the order: {admin_offsets}"
    await system.restart_router()
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:
        await log.wait_terminal([slow.order_id], 60, [system.router])
        await log.settle(1.0)
        assert_lifecycle(log.by_order[slow.order_id])


async def test_a_thousand_orders_in_flight_on_one_router(start: Start, infra: Settings) -> None:
    """Execution never blocks a partition: every order is submitted while none has settled yet."""
    system = await start(venue_exec_latency_ms="10000")
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 9) for i in range(1000)]
    await produce(infra.bootstrap_servers, system.topics.requests, orders)
    async with LogReader(infra.bootstrap_servers, system.topics.events) as log:

        def all_submitted(reader: LogReader) -> bool:
            return all(
                reader.by_order.get(o.order_id) and reader.by_order[o.order_id][-1].type == "OrderSubmitted"
                for o in orders
            )

        await log.wait_for(all_submitted, 60, "1,000 orders submitted", [system.router, system.venue])
        pending = sum([(await system.ledger(v))["pending"] for v in ("raydium", "meteora")])
        assert pending == len(orders), f"{pending} swaps pending at the venues"
        await log.wait_terminal([o.order_id for o in orders], 90, [system.router, system.venue])
        for order in orders:
            assert_lifecycle(log.by_order[order.order_id])
