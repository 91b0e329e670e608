"""The ingress against the real broker and database: a 201 means the order is in the intake topic.

Also: the seed's Postman requests get the statuses its clients expect, every validation rule is a 400 that
writes nothing, a send past its deadline is never a 201, and a down broker gives 503 while /health stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from confluent_kafka import KafkaError
from starlette.applications import Starlette

from events.codec import decode
from events.topics import Topics
from events.types import OrderRequested
from services.config import Settings
from services.ingress.options import IngressOptions
from tests.api_harness import api_app

pytestmark = pytest.mark.integration

URL = "/api/orders/execute"
JSON = {"Content-Type": "application/json"}
# The bodies of the seed's Postman collection, verbatim.
SEED_SELL_SOL = {
    "baseToken": "SOL",
    "quoteToken": "USDC",
    "side": "sell",
    "amountIn": 1.5,
    "slippageBps": 100,
}
SEED_BUY_SOL = {"baseToken": "SOL", "quoteToken": "USDC", "side": "buy", "amountIn": 100, "slippageBps": 150}
SEED_ETH_USDT = {
    "baseToken": "ETH",
    "quoteToken": "USDT",
    "side": "sell",
    "amountIn": 0.5,
    "slippageBps": 200,
}
SEED_MISSING_FIELDS = {"baseToken": "SOL", "side": "buy"}
SEED_WRONG_SIDE = {"baseToken": "SOL", "quoteToken": "USDC", "side": "invalid", "amountIn": 1.0}
SEED_CONCURRENT = {
    "baseToken": "SOL",
    "quoteToken": "USDC",
    "side": "sell",
    "amountIn": 0.25,
    "slippageBps": 100,
}


def settings_for(infra: Settings, topics: Topics) -> Settings:
    return dataclasses.replace(infra, topic_prefix=topics.requests.removesuffix("orders.requests"))


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, options: IngressOptions | None = None, *, connected: bool = True
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running (producer, db pool), and a client talking ASGI to it."""
    app = api_app(settings, options=options)
    async with app.router.lifespan_context(app):
        if connected:
            await asyncio.wait_for(app.state.ingress.publisher.wait_connected(), 30)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingress"
        ) as client:
            yield app, client


@contextlib.asynccontextmanager
async def running(
    settings: Settings, options: IngressOptions | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a running app whose producer is connected."""
    async with serving(settings, options) as (_, client):
        yield client


async def read_topic(
    settings: Settings, topic: str, partitions: int = 3
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its current end, read_committed (`topics` topics have 3 partitions)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def assert_logged(records: list[ConsumerRecord[bytes, bytes]], answer: dict[str, Any]) -> OrderRequested:
    """The record the 201 `answer` points at is the order's OrderRequested, keyed and typed."""
    pos = answer["position"]
    [record] = [
        r
        for r in records
        if (r.topic, r.partition, r.offset) == (pos["topic"], pos["partition"], pos["offset"])
    ]
    event = decode(record.value)
    assert isinstance(event, OrderRequested)
    assert (event.order_id, event.seq, event.causation_id) == (answer["orderId"], 1, None)
    assert record.key == answer["orderId"].encode()
    assert dict(record.headers)["type"] == b"OrderRequested"
    return event


async def test_a_201_order_is_in_the_intake_topic(infra: Settings, topics: Topics) -> None:
    settings = settings_for(infra, topics)
    async with running(settings) as client:
        sell = await client.post(URL, json=SEED_SELL_SOL)
        buy = await client.post(URL, json=SEED_BUY_SOL)
    assert (sell.status_code, buy.status_code) == (201, 201)
    records = await read_topic(settings, topics.requests)
    assert len(records) == 2
    sold = assert_logged(records, sell.json())
    bought = assert_logged(records, buy.json())
    assert sell.json()["position"]["topic"] == topics.requests
    assert (sold.data.side, sold.data.amount_in, sold.data.slippage_bps) == ("sell", 1.5, 100)
    assert (bought.data.side, bought.data.amount_in, bought.data.slippage_bps) == ("buy", 100.0, 150)
    assert (bought.data.base_token, bought.data.quote_token, bought.data.order_type) == (
        "SOL",
        "USDC",
        "market",
    )


async def test_the_seed_clients_requests_get_the_statuses_they_expect(
    infra: Settings, topics: Topics
) -> None:
    async with running(settings_for(infra, topics)) as client:
        health = await client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        for body in (SEED_SELL_SOL, SEED_BUY_SOL, SEED_ETH_USDT):
            r = await client.post(URL, json=body, headers={"Content-Type": "application/json"})
            answer = r.json()
            assert r.status_code == 201 and answer["status"] == "pending"
            assert isinstance(answer["orderId"], str) and answer["wsUrl"] == f"/ws/orders/{answer['orderId']}"
        for invalid in (SEED_MISSING_FIELDS, SEED_WRONG_SIDE):
            r = await client.post(URL, json=invalid)
            assert r.status_code == 400 and r.json()["error"]
        concurrent = await asyncio.gather(*(client.post(URL, json=SEED_CONCURRENT) for _ in range(5)))
        assert [r.status_code for r in concurrent] == [201] * 5
        assert len({r.json()["orderId"] for r in concurrent}) == 5
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ready", "broker": "ok", "database": "ok"},
        )


BAD: list[tuple[bytes | dict[str, Any], str]] = [
    (b"{not json", "body"),
    (b"[1]", "body"),
    ({**SEED_SELL_SOL, "baseToken": None}, "baseToken"),
    (SEED_MISSING_FIELDS, "quoteToken"),
    ({**SEED_SELL_SOL, "amountIn": True}, "amountIn"),
    ({**SEED_SELL_SOL, "amountIn": "1.5"}, "amountIn"),
    (SEED_WRONG_SIDE, "side"),
    ({**SEED_SELL_SOL, "quoteToken": "SOL"}, "quoteToken"),
    ({**SEED_SELL_SOL, "baseToken": "DOGE"}, "baseToken"),
    ({**SEED_SELL_SOL, "amountIn": 0}, "amountIn"),
    ({**SEED_SELL_SOL, "amountIn": -3}, "amountIn"),
    (b'{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":NaN}', "amountIn"),
    (b'{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":Infinity}', "amountIn"),
    (b'{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":1e400}', "amountIn"),
    ({**SEED_SELL_SOL, "slippageBps": 10_001}, "slippageBps"),
    ({**SEED_SELL_SOL, "slippageBps": 2.5}, "slippageBps"),
    ({**SEED_SELL_SOL, "type": "stop"}, "type"),
    ({**SEED_SELL_SOL, "type": "limit"}, "limitPrice"),  # a limit order needs its limit (and no slippage)
    ({**SEED_SELL_SOL, "limitPrice": 150.0}, "limitPrice"),  # a market order takes no limit
]


async def test_every_validation_rule_is_a_400_naming_the_field_and_writes_nothing(
    infra: Settings, topics: Topics
) -> None:
    settings = settings_for(infra, topics)
    async with running(settings) as client:
        for body, field in BAD:
            r = await (
                client.post(URL, content=body, headers=JSON)
                if isinstance(body, bytes)
                else client.post(URL, json=body)
            )
            assert r.status_code == 400, (body, r.text)
            assert field in [d["field"] for d in r.json()["details"]], (body, r.text)
        r = await client.post(URL, json=SEED_SELL_SOL, headers={"Idempotency-Key": "k" * 256})
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "Idempotency-Key"
        big = await client.post(URL, json={**SEED_SELL_SOL, "pad": "x" * 20_000})
        assert big.status_code == 413 and big.json()["details"][0]["field"] == "body"
        wrong = await client.put(URL, json=SEED_SELL_SOL)
        assert wrong.status_code == 405 and "error" in wrong.json()
    assert await read_topic(settings, topics.requests) == []


async def test_numbers_beyond_their_bounds_are_a_400_naming_the_bound_and_write_nothing(
    infra: Settings, topics: Topics
) -> None:
    """The review's requests that put the router in a crash loop (amountIn 1e308, a buy of 1e306) and every
    other bounded number of a request: 400, the field and its bound named, nothing in the intake."""
    settings = settings_for(infra, topics)
    limit = {"type": "limit", "baseToken": "SOL", "quoteToken": "USDC", "side": "buy", "amountIn": 1.0}
    sniper = {"type": "sniper", "baseToken": "BONK", "quoteToken": "USDC", "amountIn": 1.0}
    beyond = [
        ({"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1e308}, "amountIn"),
        ({"baseToken": "ETH", "quoteToken": "USDT", "side": "buy", "amountIn": 1e306}, "amountIn"),
        ({**SEED_SELL_SOL, "amountIn": 1_000_000_000_001}, "amountIn"),
        ({**limit, "limitPrice": 2e12}, "limitPrice"),
        ({**sniper, "maxPrice": 1e13, "minLiquidity": 1.0}, "maxPrice"),
        ({**sniper, "maxPrice": 1.0, "minLiquidity": 1e300}, "minLiquidity"),
    ]
    async with running(settings) as client:
        for body, field in beyond:
            r = await client.post(URL, json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["details"] == [
                {"field": field, "message": f"must be at most 1e+12, got {body[field]!r}"}
            ], r.text
        edge = await client.post(URL, json={**SEED_SELL_SOL, "amountIn": 1e12})
        assert edge.status_code == 201, edge.text
    records = await read_topic(settings, topics.requests)
    assert [r.key for r in records] == [edge.json()["orderId"].encode()]


async def test_a_send_past_its_deadline_is_a_503_never_a_201(infra: Settings, topics: Topics) -> None:
    settings = settings_for(infra, topics)
    key = {"Idempotency-Key": f"late-{topics.requests}"}
    async with running(settings, IngressOptions(send_timeout_s=1e-6)) as client:
        answers = [await client.post(URL, json=SEED_SELL_SOL, headers=key) for _ in range(3)]
    assert [r.status_code for r in answers] == [503] * 3
    assert all(r.headers["retry-after"] == "1" and "error" in r.json() for r in answers)
    async with running(settings) as client:  # the retry with the key, once the broker is timely again
        ok = await client.post(URL, json=SEED_SELL_SOL, headers=key)
    assert ok.status_code == 201
    records = await read_topic(settings, topics.requests)
    assert_logged(records, ok.json())
    # Writes whose outcome was unknown may have landed too, but only ever under the key's one order id.
    assert {r.key for r in records} == {ok.json()["orderId"].encode()}


async def test_a_producer_with_a_fatal_error_is_replaced(infra: Settings, topics: Topics) -> None:
    settings = settings_for(infra, topics)
    async with serving(settings) as (app, client):
        assert (await client.post(URL, json=SEED_SELL_SOL)).status_code == 201
        # What librdkafka reports when an idempotent producer can no longer write (its sequence refused
        # after a broker lost its log, say): a fatal error, after which nothing it holds is ever delivered.
        producer = app.state.ingress.publisher._producer
        producer._error(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "injected", fatal=True))
        r = await client.post(URL, json=SEED_SELL_SOL)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        await asyncio.wait_for(app.state.ingress.publisher.wait_connected(), 30)
        assert app.state.ingress.publisher._producer is not producer
        ok = await client.post(URL, json=SEED_BUY_SOL)
        assert ok.status_code == 201
    assert_logged(await read_topic(settings, topics.requests), ok.json())


def _refusing_socket() -> socket.socket:
    """A loopback port that is bound but not listening: connections to it are refused, deterministically."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_a_down_broker_gives_503_and_the_ingress_connects_once_it_is_up(
    infra: Settings, topics: Topics
) -> None:
    broker_host, broker_port = infra.bootstrap_servers.split(",")[0].rsplit(":", 1)
    with _refusing_socket() as sock:
        port = sock.getsockname()[1]
        settings = dataclasses.replace(settings_for(infra, topics), bootstrap_servers=f"127.0.0.1:{port}")
        async with serving(settings, connected=False) as (app, client):
            health = await client.get("/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            r = await client.post(URL, json=SEED_SELL_SOL)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"].startswith("broker unavailable")
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert (ready.json()["broker"], ready.json()["database"]) == ("down", "ok")
            assert ready.json()["error"] == "broker unavailable"

            async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                up_reader, up_writer = await asyncio.open_connection(broker_host, int(broker_port))
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

            # The broker "comes up" on the bootstrap address: a forwarder starts listening on that socket.
            proxy = await asyncio.start_server(forward, sock=sock)
            async with proxy:
                await asyncio.wait_for(app.state.ingress.publisher.wait_connected(), 30)
                ok = await client.post(URL, json=SEED_SELL_SOL)
                assert ok.status_code == 201
                proxy.close()
    assert_logged(await read_topic(infra, topics.requests), ok.json())


async def test_a_down_database_fails_keyed_orders_closed_while_unkeyed_ones_flow(
    infra: Settings, topics: Topics
) -> None:
    with _refusing_socket() as sock:
        url = f"postgresql://oee@127.0.0.1:{sock.getsockname()[1]}/oee"
        settings = dataclasses.replace(settings_for(infra, topics), database_url=url)
        async with running(settings) as client:
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert (ready.json()["broker"], ready.json()["database"]) == ("ok", "down")
            # Without a key nothing needs checking: the log is the truth, and a random id is never a repeat.
            assert (await client.post(URL, json=SEED_BUY_SOL)).status_code == 201
            # A key that cannot be checked is refused, not guessed: it could be a repeat with another body.
            keyed = await client.post(URL, json=SEED_BUY_SOL, headers={"Idempotency-Key": "unverifiable"})
            assert keyed.status_code == 503 and keyed.headers["retry-after"] == "1"
            assert "cannot be checked" in keyed.json()["error"]
    records = await read_topic(infra, topics.requests)
    assert len(records) == 1 and decode(records[0].value).data.idempotency_key is None  # type: ignore[attr-defined]
