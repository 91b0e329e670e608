"""Trigger engine benchmark: 100,000 resting limit orders on one `oee triggers` process, with the real
`oee venue` and `oee router` as subprocesses on topics of their own.

    uv run python -m bench.bench_triggers [--orders 100000] [--ticks 25] [--per-tick 40]
    uv run python -m bench.bench_triggers --micro        # the book alone, in this process: CPU per event

1. N limit orders (SOL/USDC and ETH/USDC, buys below and sells above the market, small sizes) go to the
   intake; the router opens them all (the resting topic holds N records).
2. `oee triggers` starts: time to its book restored ("trigger engine ready") and its market partitions
   assigned (serving), and its RSS.
3. Price events the bench publishes to the market-data topic (SOL/USDC on one venue), each crossing about
   `--per-tick` more sell limits: per fired order, the market event's time -> its `OrderRouting`'s time
   (both event times, written by different processes on this machine), and -> the moment this process
   read `OrderRouting` from the log (which commits with building and submitted, after the quotes).
4. SIGKILL of the engine, restart: time to serving again, RSS, and one more price event to prove it fires.

The venue publishes no market data of its own here (`VENUE_MARKET_DATA_MS=0`): the price events are the
bench's, so it knows exactly which orders each must fire. The sources are compiled to bytecode first, as
the image does (`UV_COMPILE_BYTECODE=1`): with `PYTHONDONTWRITEBYTECODE` set and no `.pyc`, every process
start compiles Faust and the rest again (~6 s on this machine under load). Prints figures and writes JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import create_topics, latency_summary, machine, print_table, settings_for, write_result
from events.codec import decode, encode, header_type, headers_for
from events.commands import decode_intake
from events.market import PoolPriced, PoolState, encode_market, market_key, new_market_event
from events.resting import RestingOrder
from events.topics import Topics
from events.types import OrderRequested, OrderRouting, OrderTriggered
from services.config import Settings
from tests.e2e.harness import Proc, free_port, service, wait_http, wait_log
from tests.samples import limit_request, order_request

PARTITIONS = 12
DEPTH_SOL = 26_667.0  # Raydium's SOL/USDC reserve: the bench's price events use the same depth
FEE = 0.9975  # 25 bps


def orders(n: int, rng: random.Random) -> list[OrderRequested]:
    """Half SOL/USDC, half ETH/USDC; half sells above the market, half buys below: nothing crosses at start."""
    made = []
    for i in range(n):
        eth = i % 2 == 1
        base, mid = ("ETH", 3000.0) if eth else ("SOL", 150.0)
        if rng.random() < 0.5:
            made.append(
                limit_request("sell", round(mid * rng.uniform(1.003, 1.6), 4), rng.uniform(0.01, 1.0), base)
            )
        else:
            made.append(
                limit_request("buy", round(mid * rng.uniform(0.4, 0.997), 4), rng.uniform(1.0, 100.0), base)
            )
    return made


async def produce_all(bootstrap: str, topic: str, items: list[OrderRequested]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, encode(o), key=o.order_id.encode(), headers=headers_for(o))
            for o in items
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def resting_count(bootstrap: str, topic: str) -> int:
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def start_triggers(settings: Settings, tmp: Path) -> tuple[Proc, dict[str, float]]:
    env = {"TRIGGERS_METRICS_PORT": "0", "TRIGGERS_INSTANCE_ID": "bench"}
    began = time.monotonic()
    proc = service("triggers", settings, tmp, env).start()
    await wait_log(proc, "trigger engine ready", timeout=120)
    ready = time.monotonic() - began
    await wait_log(proc, "market partitions assigned", timeout=120)
    serving = time.monotonic() - began
    reported = re.findall(r"restored, \d+ fired on the recent market, in ([0-9.]+) s", proc.log.read_text())
    return proc, {
        "ready_s": round(ready, 2),
        "serving_s": round(serving, 2),
        "restore_s_reported": float(reported[-1]) if reported else float("nan"),
        "rss_mib": rss_mib(proc.pid),
    }


class Watch:
    """Reads the order event log and the intake from their ends: per order, its trigger's market event and the
    engine's request time (`issued_at`), its OrderRouting's time and when it was read here."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.consumer = AIOKafkaConsumer(
            topics.events,
            topics.requests,
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            fetch_max_wait_ms=5,
        )
        self.fired: dict[str, str] = {}  # order id -> market event id
        self.asked: dict[str, float] = {}  # order id -> the engine's OrderTriggerRequested.issued_at
        self.routing: dict[str, tuple[float, float]] = {}  # order id -> (occurred_at, seen)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        await self.consumer.start()
        await self.consumer.seek_to_end()
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    async def _run(self) -> None:
        while True:
            for rows in (await self.consumer.getmany(timeout_ms=100)).values():
                seen = time.time()
                for r in rows:
                    kind = header_type(r.headers)
                    if kind == "OrderTriggerRequested":
                        command = decode_intake(r.value or b"")
                        self.asked.setdefault(command.order_id, command.issued_at.timestamp())  # type: ignore[union-attr]
                    elif kind == "OrderTriggered":
                        event = decode(r.value or b"")
                        assert isinstance(event, OrderTriggered)
                        self.fired[event.order_id] = event.data.market_event_id
                    elif kind == "OrderRouting":
                        event = decode(r.value or b"")
                        assert isinstance(event, OrderRouting)
                        self.routing.setdefault(event.order_id, (event.occurred_at.timestamp(), seen))


def tick(price: float) -> Any:
    pool = PoolState(
        token_a="SOL", token_b="USDC", reserve_a=DEPTH_SOL, reserve_b=DEPTH_SOL * price, fee_bps=25.0
    )
    return new_market_event(PoolPriced, venue="raydium", pool=pool, cause="walk")


def compile_bytecode() -> None:
    """As the image does: the services start from `.pyc`, not by compiling their sources."""
    import compileall
    import site

    for path in [
        *site.getsitepackages(),
        *(str(Path(__file__).resolve().parent.parent / d) for d in ("events", "services", "projections")),
    ]:
        compileall.compile_dir(path, quiet=1, workers=0)  # writes .pyc whatever PYTHONDONTWRITEBYTECODE says


async def run(args: argparse.Namespace) -> dict[str, Any]:
    compile_bytecode()
    prefix = f"bench-triggers-{uuid.uuid4().hex[:8]}."
    settings = settings_for(prefix)
    topics = Topics.with_prefix(prefix)
    create_topics(settings, PARTITIONS)
    tmp = Path(tempfile.mkdtemp(prefix="bench-triggers-"))
    rng = random.Random(args.seed)
    book = orders(args.orders, rng)
    sells = sorted(o.data.limit_price for o in book if o.data.base_token == "SOL" and o.data.side == "sell")  # type: ignore[misc]
    result: dict[str, Any] = {
        "machine": machine(),
        "orders": args.orders,
        "partitions": PARTITIONS,
        "prefix": prefix,
    }
    venue_port = free_port()
    env = {"VENUE_PORT": str(venue_port), "VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": "0",
           "VENUE_MARKET_DATA_MS": "0", "ROUTER_METRICS_PORT": "0"}  # fmt: skip
    procs: dict[str, Proc] = {"venue": service("venue", settings, tmp, env).start()}
    try:
        await wait_http(f"http://127.0.0.1:{venue_port}/health", procs["venue"])
        procs["router"] = service(
            "router", settings, tmp, dict(env, VENUE_URL=f"http://127.0.0.1:{venue_port}")
        ).start()
        await wait_log(procs["router"], "partition assigned", count=PARTITIONS, timeout=120)

        began = time.monotonic()
        await produce_all(settings.bootstrap_servers, topics.requests, book)
        # The router is done when the resting topic holds every order (its end counts transaction markers
        # too, so: at least N, and no longer growing).
        last, steady_since = -1, time.monotonic()
        while True:
            now_at = await resting_count(settings.bootstrap_servers, topics.resting)
            if now_at != last:
                last, steady_since = now_at, time.monotonic()
            elif now_at >= args.orders and time.monotonic() - steady_since >= 3.0:
                break
            await asyncio.sleep(0.5)
        opened_s = steady_since - began
        result["router_opened"] = {"s": round(opened_s, 1), "orders_per_s": round(args.orders / opened_s)}
        print(f"{args.orders} orders opened by the router in {opened_s:.1f} s")

        procs["triggers"], result["first_start"] = await start_triggers(settings, tmp)
        print(f"first start: {result['first_start']}")

        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0)
        await producer.start()
        try:
            async with Watch(settings.bootstrap_servers, topics) as watch:
                sent: dict[str, tuple[float, float]] = {}  # market event id -> (occurred_at, sent)

                async def publish(price: float) -> str:
                    event = tick(price)
                    sent[event.event_id] = (event.occurred_at.timestamp(), time.time())
                    await producer.send_and_wait(
                        topics.market_data, encode_market(event), key=market_key(event)
                    )
                    return event.event_id

                await publish(150.0)  # the first state of the pair: nothing crosses
                ticks = []
                for k in range(1, args.ticks + 1):  # each crosses about `per_tick` more sell limits
                    bound = sells[min(k * args.per_tick, len(sells) - 1)]
                    ticks.append(await publish(bound / FEE * 1.00005))
                    await asyncio.sleep(args.spacing_s)  # the pace of a market, not a synchronisation
                deadline = time.monotonic() + 60
                expected = sum(
                    1 for s in sells if s <= sells[min(args.ticks * args.per_tick, len(sells) - 1)]
                )
                while time.monotonic() < deadline and len(watch.routing) < expected * 0.98:
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.0)  # stragglers
                event_time, read_time, engine, router = [], [], [], []
                for order_id, market_id in watch.fired.items():
                    if order_id in watch.routing and market_id in sent:
                        occurred, seen = watch.routing[order_id]
                        event_time.append(occurred - sent[market_id][0])
                        read_time.append(seen - sent[market_id][1])
                        if order_id in watch.asked:
                            engine.append(watch.asked[order_id] - sent[market_id][0])
                            router.append(occurred - watch.asked[order_id])
                result["fired"] = {
                    "expected_about": expected,
                    "fired": len(watch.fired),
                    "routed": len(watch.routing),
                }
                result["event_to_routing_event_time"] = latency_summary(event_time)
                result["event_to_routing_read_from_log"] = latency_summary(read_time)
                result["event_to_engine_request"] = latency_summary(engine)
                result["engine_request_to_routing"] = latency_summary(router)

                # The ceiling on the same machine at the same moment: market orders, request -> routing (the
                # router picking an order up from the intake: the second half of a trigger's path).
                markets: list[OrderRequested] = []
                for _ in range(args.ticks):  # as many, at the same pace as the fired orders came
                    batch = [order_request("sell", amount=0.01) for _ in range(args.per_tick)]
                    markets += batch
                    await produce_all(settings.bootstrap_servers, topics.requests, batch)
                    await asyncio.sleep(args.spacing_s)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(o.order_id in watch.routing for o in markets):
                    await asyncio.sleep(0.2)
                pickup = [
                    watch.routing[o.order_id][0] - o.occurred_at.timestamp()
                    for o in markets
                    if o.order_id in watch.routing
                ]
                result["market_order_request_to_routing"] = latency_summary(pickup)
                result["rss_after_ticks_mib"] = rss_mib(procs["triggers"].pid)
                print(f"fired: {result['fired']}")

                restarts = []
                for n in range(args.restarts):
                    procs["triggers"].kill(signal.SIGKILL)
                    procs["triggers"], restarted = await start_triggers(settings, tmp)
                    before = len(watch.fired)
                    bound = sells[min((args.ticks + 1 + n) * args.per_tick, len(sells) - 1)]
                    await publish(bound / FEE * 1.00005)
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and len(watch.fired) == before:
                        await asyncio.sleep(0.1)
                    restarted["fired_after_restart"] = len(watch.fired) - before
                    restarts.append(restarted)
                result["restart_after_sigkill"] = restarts[-1]
                result["restarts_after_sigkill"] = restarts
                print(f"restarts after SIGKILL: {result['restarts_after_sigkill']}")
        finally:
            await producer.stop()
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
    return result


def micro(args: argparse.Namespace) -> dict[str, Any]:
    """The book alone (no I/O): the CPU a price event costs against N resting orders, and a restore's."""
    from services.triggers.book import Book

    rng = random.Random(args.seed)
    requests = orders(args.orders, rng)
    resting = [
        RestingOrder(
            order_id=o.order_id,
            order_type="limit",
            base_token=o.data.base_token,
            quote_token=o.data.quote_token,
            side=o.data.side,
            amount_in=o.data.amount_in,
            bound=o.data.limit_price or 1.0,
            expires_at=o.data.expires_at or datetime.now(UTC),
            opened_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        for o in requests
    ]
    book = Book()
    began = time.perf_counter()
    book.load(resting)
    load_s = time.perf_counter() - began
    price, costs, fired, evaluated = 150.0, [], 0, 0
    for _ in range(2000):  # a random walk of ~5 bps steps: each event crosses the few orders it passes
        price *= 1 + rng.gauss(0, 0.0005)
        event = tick(price)
        before = book.evaluated
        t = time.perf_counter()
        fired += len(book.on_market(event))
        costs.append(time.perf_counter() - t)
        evaluated += book.evaluated - before
    us = sorted(c * 1e6 for c in costs)
    return {
        "orders": args.orders,
        "load_s": round(load_s, 3),
        "per_event_us": {
            q: round(us[min(len(us) - 1, int(len(us) * p))], 1)
            for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "fired": fired,
        "evaluated_per_event": round(evaluated / len(costs), 1),
        "left": len(book),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_triggers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=25)
    parser.add_argument("--per-tick", type=int, default=40)
    parser.add_argument("--spacing-s", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restarts", type=int, default=3, help="SIGKILLs and restarts of the engine")
    parser.add_argument("--micro", action="store_true", help="the book alone, in this process")
    args = parser.parse_args()
    if args.micro:
        figures = micro(args)
        print(figures)
        print(write_result("triggers-micro", figures))
        return
    result = asyncio.run(run(args))
    rows = [
        ["book restore + assignment, first start", f"{result['first_start']['serving_s']} s", f"{result['first_start']['rss_mib']} MiB"],
        ["restart after SIGKILL, serving again", ", ".join(f"{r['serving_s']} s" for r in result["restarts_after_sigkill"]), f"{result['restart_after_sigkill']['rss_mib']} MiB"],
        ["price event -> OrderRouting (event times)", str(result["event_to_routing_event_time"]), ""],
        ["price event -> OrderRouting read from the log", str(result["event_to_routing_read_from_log"]), ""],
        ["  of which price event -> engine's request", str(result["event_to_engine_request"]), ""],
        ["  of which engine's request -> OrderRouting", str(result["engine_request_to_routing"]), ""],
        ["ceiling: a market order, request -> OrderRouting", str(result["market_order_request_to_routing"]), ""],
    ]  # fmt: skip
    print_table(rows, ["what", "figure", "engine RSS"])
    print(write_result("triggers", result))


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "INFO")
    main()
