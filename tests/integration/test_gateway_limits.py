"""What one client can make the gateway hold or do, bounded: message size (1009), connections per account
(1008), look-ups per connection (and withdrawn when their streams end), log searches cancelled when nobody
waits, and look-ups of ids the log never had costing one read of each partition however many come."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets
from aiokafka import AIOKafkaProducer
from websockets.exceptions import ConnectionClosed

from events.topics import Topics
from services.accounts import store
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.logsearch import LogSearch
from tests.integration.gateway_harness import (
    TEST_OPTIONS,
    append,
    collect,
    connect,
    own_schema,
    serving,
    wait_until,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(infra: Settings, topics: Topics, unique: str) -> AsyncIterator[Settings]:
    async with own_schema(infra, topics, unique) as live:
        yield live


def sub(order_id: str, action: str = "subscribe") -> str:
    return orjson.dumps({"action": action, "orderId": order_id}).decode()


def ghost() -> str:
    """A valid order id nothing ever appends."""
    return str(uuid.uuid4())


async def fill(bootstrap: str, topic: str, per_partition: int, partitions: int = 3) -> None:
    """Records of other orders (not events: a search only decodes the records of the keys it looks for)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"{}", key=uuid.uuid4().hex.encode(), partition=p)
            for p in range(partitions)
            for _ in range(per_partition)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_a_message_over_the_limit_is_closed_1009_on_both_endpoints(settings: Settings) -> None:
    options = dataclasses.replace(TEST_OPTIONS, max_message_bytes=4096)
    async with serving(settings, options) as gw:
        async with connect(gw.url("/ws")) as ws:
            await ws.send('{"action": "ping", "id": "' + "i" * 4000 + '"}')  # under the limit: answered
            pong = orjson.loads(await ws.recv())
            assert pong["type"] == "pong" and len(pong["id"]) == 4000
            await ws.send('{"action": "ping", "id": "' + "i" * 5000 + '"}')
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009 and "exceeds limit of 4096 bytes" in (ws.close_reason or "")
        async with connect(gw.url(f"/ws/orders/{ghost()}")) as ws:
            await ws.send("x" * 10_000)
            stream = await collect(ws, timeout=10)
        assert stream.code == 1009
        await wait_until(lambda: gw.gateway.snapshot()["connections"] == 0, 10, "both to be gone")


async def test_the_standalone_gateways_metrics_are_for_operators_under_keys(
    settings: Settings, unique: str
) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        trader = (await store.create_account(conn, f"trader-{unique}")).key
        ops = (await store.create_account(conn, f"ops-{unique}", operator=True)).key
    finally:
        await conn.close()
    async with serving(settings, accounts=AccountsOptions(auth="keys")) as gw:
        url = f"http://127.0.0.1:{gw.port}/metrics"
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(url)).status_code == 401
            refused = await client.get(url, headers={"Authorization": f"Bearer {trader}"})
            assert refused.status_code == 403 and "operator" in refused.json()["error"]
            scraped = await client.get(url, headers={"Authorization": f"Bearer {ops}"})
    assert scraped.status_code == 200
    assert "oee_gateway_delivery_lag_seconds_bucket" in scraped.text
    assert "oee_gateway_connections" in scraped.text


async def test_connections_per_account(settings: Settings, unique: str) -> None:
    options = dataclasses.replace(TEST_OPTIONS, max_account_connections=2)
    conn = await asyncpg.connect(settings.database_url)
    try:
        alice = (await store.create_account(conn, f"alice-{unique}")).key
        bob = (await store.create_account(conn, f"bob-{unique}")).key
    finally:
        await conn.close()
    async with serving(settings, options, accounts=AccountsOptions(auth="keys")) as gw:
        url = gw.url("/ws")

        def as_(key: str) -> Any:
            return websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=30
            )

        first = [await as_(alice) for _ in range(2)]
        async with as_(alice) as third:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(third.recv(), 10)
        assert third.close_code == 1008
        assert third.close_reason == "at most 2 connections per account: close one first"
        async with as_(bob) as other:  # another account is not affected
            await other.send('{"action": "ping", "id": 1}')
            assert orjson.loads(await other.recv())["type"] == "pong"
            assert gw.gateway.snapshot()["accounts"] == 2
        await first.pop().close()
        await wait_until(lambda: gw.gateway.snapshot()["connections"] == 1, 10, "alice's one to be gone")
        async with as_(alice) as again:
            await again.send('{"action": "ping", "id": 2}')
            assert orjson.loads(await again.recv())["type"] == "pong"
        for ws in first:
            await ws.close()
    # Without keys (AUTH=off), every connection is the implicit `local` account's.
    async with serving(settings, options) as gw:
        url = gw.url("/ws")
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(c.recv(), 10)
            assert c.close_code == 1008
            await a.send('{"action": "ping"}')
            await b.send('{"action": "ping"}')
            assert [orjson.loads(await w.recv())["type"] for w in (a, b)] == ["pong", "pong"]


async def test_look_ups_are_bounded_per_connection_and_withdrawn_when_streams_end(
    settings: Settings,
) -> None:
    # History queries held on a table lock: every subscription's look-up stays under way.
    options = dataclasses.replace(TEST_OPTIONS, max_lookups=5, db_timeout_s=60.0)
    ids = [ghost() for _ in range(20)]
    locker = await asyncpg.connect(settings.database_url)
    tx = locker.transaction()
    try:
        async with serving(settings, options) as gw:
            gateway = gw.gateway

            def lookups() -> tuple[int, int, int]:
                stats = gateway.snapshot()
                return stats["lookups"], stats["lookupsWaiting"], gateway.pg.pending()

            await tx.start()
            await locker.execute("LOCK TABLE order_events IN ACCESS EXCLUSIVE MODE")
            async with connect(gw.url("/ws")) as ws:
                for oid in ids:
                    await ws.send(sub(oid))
                await wait_until(lambda: len(gateway.hub) == 20, 10, "every subscription")
                # 5 under way (the first query sent, the others waiting for the next), 15 waiting their turn.
                await wait_until(lambda: lookups()[:2] == (5, 15), 10, "5 look-ups under way")
                assert lookups()[2] < 5
                await ws.send(sub(ids[-1], "unsubscribe"))  # still read and answered at once
                await wait_until(lambda: lookups()[:2] == (5, 14), 10, "one withdrawn from the queue")
            # The client left: its streams end and withdraw their look-ups (the query sent stays sent).
            await wait_until(lambda: lookups() == (0, 0, 0), 10, "every look-up withdrawn")
            assert len(gateway.hub) == 0

            async with connect(gw.url("/ws")) as ws:
                for oid in ids[:3]:
                    await ws.send(sub(oid))
                await wait_until(lambda: lookups() == (3, 0, 3), 10, "3 queries waiting")
                for oid in ids[:3]:
                    await ws.send(sub(oid, "unsubscribe"))
                await wait_until(lambda: lookups() == (0, 0, 0), 10, "unsubscribed")
            await tx.rollback()
    finally:
        await locker.close()


async def test_a_search_nobody_waits_for_stops_reading(settings: Settings) -> None:
    topic = Topics.with_prefix(settings.topic_prefix).events
    await fill(settings.bootstrap_servers, topic, per_partition=12_000, partitions=1)
    search = LogSearch(settings.bootstrap_servers, topic, lookback=100_000, chunk=1000)
    try:
        task = asyncio.create_task(search.find(ghost(), 0, start=0, end=12_000, stop_seq=1))
        await wait_until(lambda: search.records_read >= 1000, 30, "the scan to start")
        task.cancel()
        read = search.records_read
        await asyncio.gather(task, return_exceptions=True)
        await wait_until(lambda: not search.scanning, 30, "the scan to stop")
        assert search.records_read <= read + 1000, "more than the chunk under way was read"
        assert search.pending() == 0

        # An index build stops too once its only waiter leaves, keeping what it read.
        task = asyncio.create_task(search.find_new(ghost(), 0, end=12_000))
        await wait_until(lambda: search.index.covered(0) is not None, 30, "the index build to start")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await wait_until(lambda: search.building() == 0, 30, "the build to stop")
        covered = search.index.covered(0)
        assert covered is not None and covered[1] < 12_000
    finally:
        await search.stop()


async def test_new_ids_are_found_through_the_index_and_read_once(settings: Settings) -> None:
    topic = Topics.with_prefix(settings.topic_prefix).events
    await fill(settings.bootstrap_servers, topic, per_partition=2000)
    order = lifecycle_events()
    meta = await append(settings.bootstrap_servers, topic, order)
    partition = meta[0].partition
    await fill(settings.bootstrap_servers, topic, per_partition=2000)
    ends = {p: 4000 + 5 * (p == partition) for p in range(3)}  # the log's end offsets
    search = LogSearch(settings.bootstrap_servers, topic, lookback=100_000, chunk=500)
    try:
        lookups = [search.find_new(ghost(), p, end=ends[p]) for p in range(3) for _ in range(30)]
        mine = search.find_new(order[0].order_id, partition, end=ends[partition])
        results = await asyncio.gather(*lookups, mine)
        assert all(r == [] for r in results[:-1])
        assert [i.seq for i in results[-1]] == [1, 2, 3, 4, 5]
        # Each partition read once for the index, plus the one chunk holding the order, read back.
        assert search.records_read <= sum(ends.values()) + 500
    finally:
        await search.stop()


async def test_a_thousand_subscriptions_to_random_ids_cost_one_look_back(settings: Settings) -> None:
    """1,000 subscriptions to ids the log never had, in waves on 10 connections: the log is read once (up
    to the look-back) per partition, not once per subscription or per wave."""
    topic = Topics.with_prefix(settings.topic_prefix).events
    per_partition = 3000
    await fill(settings.bootstrap_servers, topic, per_partition)
    options = dataclasses.replace(TEST_OPTIONS, log_lookback=2000, not_found_timeout_s=60.0)
    async with serving(settings, options) as gw:
        gateway = gw.gateway
        clients = []
        for wave in range(10):
            # The clients read nothing back (max_queue=None: they take it all in, so their close is prompt).
            ws = await websockets.connect(gw.url("/ws"), max_queue=None)
            clients.append(ws)
            for _ in range(100):
                await ws.send(sub(ghost()))
            await wait_until(
                lambda n=wave: (
                    gateway.search.new_lookups == 100 * (n + 1) and gateway.snapshot()["lookups"] == 0
                ),
                30,
                f"wave {wave}'s look-ups",
            )
        stats = gateway.snapshot()
        for ws in clients:
            await ws.close()
    assert stats["newOrderLookups"] == 1000 and stats["subscriptions"] == 1000
    assert stats["logSearchRecords"] <= 3 * 2000, stats  # one look-back of each of the 3 partitions
    assert stats["logSearchRecords"] >= 3 * 2000 - 10, stats  # ... and all of it: nothing was skipped
    assert 0 < stats["keyIndexKeys"] <= 3 * 2000
