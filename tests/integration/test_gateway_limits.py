"""What one client can make the gateway hold, bounded: message size (1009), connections per account (1008)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets
from aiokafka import AIOKafkaProducer
from websockets.exceptions import ConnectionClosed

from events.topics import Topics
from services.config import Settings
from tests.integration.gateway_harness import (
    TEST_OPTIONS,
    collect,
    connect,
    own_schema,
    serving,
    wait_until,
)

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


def with_account(app: Any) -> Any:
    """What authentication will do at the handshake: put the account in the scope (here from a header)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        account = dict(scope.get("headers", [])).get(b"x-account")
        if scope["type"] == "websocket" and account is not None:
            scope["state"] = {**scope.get("state", {}), "account": account.decode()}
        await app(scope, receive, send)

    return wrapped


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


async def test_connections_per_account(settings: Settings) -> None:
    options = dataclasses.replace(TEST_OPTIONS, max_account_connections=2)
    async with serving(settings, options, wrap=with_account) as gw:
        url = gw.url("/ws")

        def as_(account: str) -> Any:
            return websockets.connect(url, additional_headers={"X-Account": account}, open_timeout=30)

        alice = [await as_("alice") for _ in range(2)]
        async with as_("alice") as third:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(third.recv(), 10)
        assert third.close_code == 1008
        assert third.close_reason == "at most 2 connections per account: close one first"
        async with as_("bob") as bob:  # another account is not affected
            await bob.send('{"action": "ping", "id": 1}')
            assert orjson.loads(await bob.recv())["type"] == "pong"
            assert gw.gateway.snapshot()["accounts"] == 2
        await alice.pop().close()
        await wait_until(lambda: gw.gateway.snapshot()["connections"] == 1, 10, "alice's one to be gone")
        async with as_("alice") as again:
            await again.send('{"action": "ping", "id": 2}')
            assert orjson.loads(await again.recv())["type"] == "pong"
        # Without an account in the scope, connections are the implicit `local` account's.
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(c.recv(), 10)
            assert c.close_code == 1008
            await a.send('{"action": "ping"}')
            await b.send('{"action": "ping"}')
            assert [orjson.loads(await w.recv())["type"] for w in (a, b)] == ["pong", "pong"]
        for ws in alice:
            await ws.close()
