"""The trigger engine and a router core on the real broker, in process, fed by plain consumers (no Faust):
the market data the test publishes goes to the engine, the intake (orders, cancels, the engine's trigger
requests) to the router core, in each partition's order, as the agents would hand them over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from events.codec import encode, headers_for
from events.commands import Command, command_headers, encode_command
from events.market import AnyMarketEvent, PoolPriced, PoolState, encode_market, market_key, new_market_event
from events.topics import Topics
from events.types import OrderRequested
from services.router.worker import Record
from services.triggers.engine import TriggerEngine, partitions_of
from services.triggers.options import TriggerOptions

Handle = Callable[[Sequence[Record]], Awaitable[None]]


@contextlib.asynccontextmanager
async def pumping(bootstrap: str, topic: str, handle: Handle) -> AsyncIterator[asyncio.Task[None]]:
    """Read every partition of `topic` from its beginning (committed records only), handing each fetch to
    `handle` as `Record`s, until the context ends."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    await consumer.start()
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)

    async def run() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            records = [
                Record(r.partition, r.offset, r.value, r.key, list(r.headers or ()))
                for rows in batch.values()
                for r in rows
            ]
            if records:
                await handle(records)

    task = asyncio.create_task(run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


@contextlib.asynccontextmanager
async def engine_running(
    bootstrap: str, topics: Topics, history_s: float = 60.0, feed: bool = True
) -> AsyncIterator[TriggerEngine]:
    """A started engine; with `feed`, the market-data topic pumped into it (after its restore, in order)."""
    engine = TriggerEngine(
        bootstrap, topics, f"{topics.market_data}.triggers", TriggerOptions(history_s=history_s)
    )
    await engine.start()

    async def on_market(records: Sequence[Record]) -> None:
        for r in records:
            await engine.on_market(r.value, r.partition, r.offset)

    try:
        if feed:
            async with pumping(bootstrap, topics.market_data, on_market):
                yield engine
        else:
            yield engine
    finally:
        await engine.stop()


def sol_usdc(
    price: float, venue: str = "raydium", depth_sol: float = 26_667.0, fee_bps: float = 25.0
) -> AnyMarketEvent:
    """A SOL/USDC pool state at `price` USDC per SOL (Raydium's depth by default), now."""
    pool = PoolState(
        token_a="SOL", token_b="USDC", reserve_a=depth_sol, reserve_b=depth_sol * price, fee_bps=fee_bps
    )
    return new_market_event(PoolPriced, venue=venue, pool=pool, cause="walk", occurred_at=datetime.now(UTC))


async def publish(
    bootstrap: str, topics: Topics, items: Sequence[AnyMarketEvent | OrderRequested | Command]
) -> None:
    """Market events to the market-data topic (key = pair); orders and commands to the intake (key = order)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    try:
        for item in items:
            if isinstance(item, OrderRequested):
                await producer.send_and_wait(
                    topics.requests, encode(item), key=item.order_id.encode(), headers=headers_for(item)
                )
            elif isinstance(item, Command):
                await producer.send_and_wait(
                    topics.requests,
                    encode_command(item),
                    key=item.order_id.encode(),
                    headers=command_headers(item),
                )
            else:
                await producer.send_and_wait(topics.market_data, encode_market(item), key=market_key(item))
    finally:
        await producer.stop()
