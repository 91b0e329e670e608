"""The HTTP layer with a fake publisher: answers, error shapes, Idempotency-Key outcomes, broker failures.

The real producer and broker are exercised in tests/integration/test_ingress_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from events.envelope import Event
from events.types import OrderRequested
from services import config
from services.ingress.app import create_app
from services.ingress.intake import order_id_for
from services.ingress.options import IngressOptions
from services.ingress.publisher import BrokerUnavailable, Position, Publisher, PublishTimeout
from services.ingress.validation import parse_order

ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}
URL = "/api/orders/execute"


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail: Exception | None = None
        self.up = True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, event: Event) -> Position:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.events.append(event)
        return Position("orders.requests", 0, len(self.events) - 1)

    async def probe(self, timeout_s: float) -> bool:
        return self.up


def _settings() -> config.Settings:
    # Port 1 on loopback refuses at once: /ready sees the database down, nothing else needs it.
    return dataclasses.replace(config.load({}), database_url="postgresql://oee@127.0.0.1:1/oee")


@contextlib.asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield client


@pytest.fixture
async def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(fake: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings(), publisher=fake, options=IngressOptions(max_body_bytes=1024))
    async with served(app) as c:
        yield c


async def test_accepted_answer_and_event(client: httpx.AsyncClient, fake: FakePublisher) -> None:
    r = await client.post(URL, json=ORDER)
    assert r.status_code == 201
    body = r.json()
    order_id = body["orderId"]
    assert body == {
        "orderId": order_id,
        "status": "pending",
        "wsUrl": f"/ws/orders/{order_id}",
        "position": {"topic": "orders.requests", "partition": 0, "offset": 0},
    }
    assert r.headers["location"] == f"/api/orders/{order_id}"
    [event] = fake.events
    assert isinstance(event, OrderRequested)
    assert (event.order_id, event.seq, event.causation_id) == (order_id, 1, None)
    data = event.data
    assert (data.base_token, data.quote_token, data.side, data.amount_in, data.slippage_bps) == (
        "SOL", "USDC", "sell", 1.5, 100,
    )  # fmt: skip
    assert data.order_type == "market" and data.idempotency_key is None


async def test_unknown_path_and_wrong_method_answer_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not found: /nope"
    r = await client.get(URL)
    assert r.status_code == 405 and r.json()["details"] == [] and "POST" in r.headers["allow"]
    r = await client.post("/health")
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"


async def test_too_large_by_content_length_and_by_streamed_size(client: httpx.AsyncClient) -> None:
    big = b'{"pad": "' + b"x" * 2000 + b'"}'
    r = await client.post(URL, content=big)
    assert r.status_code == 413
    assert r.json()["details"] == [{"field": "body", "message": "must be at most 1024 bytes"}]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only the streamed size can tell
        for _ in range(5):
            yield b" " * 300

    r = await client.post(URL, content=chunks())
    assert r.status_code == 413 and r.json()["error"] == "request body too large"


async def test_validation_errors_list_every_problem(client: httpx.AsyncClient, fake: FakePublisher) -> None:
    r = await client.post(URL, json={"baseToken": "SOL", "side": "buy"}, headers={"Idempotency-Key": ""})
    assert r.status_code == 400
    body = r.json()
    assert [d["field"] for d in body["details"]] == ["Idempotency-Key", "quoteToken", "amountIn"]
    assert body["error"].startswith("invalid order request: Idempotency-Key must not be empty")
    r = await client.post(URL, json=ORDER, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "Idempotency-Key"
    assert fake.events == []


async def test_same_key_replays_conflicts_and_mismatches(
    client: httpx.AsyncClient, fake: FakePublisher
) -> None:
    key = {"Idempotency-Key": "order-7"}
    fake.gate = asyncio.Event()
    first = asyncio.create_task(client.post(URL, json=ORDER, headers=key))
    await asyncio.wait_for(fake.entered.wait(), 5)  # the first is parked at the gate, mid-publish
    r = await client.post(URL, json=ORDER, headers=key)
    assert r.status_code == 409 and r.headers["retry-after"] == "1"
    assert (await client.post(URL, json={**ORDER, "amountIn": 2}, headers=key)).status_code == 422
    fake.gate.set()
    r1 = await first
    assert r1.status_code == 201 and r1.json()["orderId"] == order_id_for("order-7")
    again = await client.post(URL, json={**ORDER, "slippageBps": 100.0, "extra": True}, headers=key)
    assert again.status_code == 201 and again.json() == r1.json()
    assert again.headers["idempotent-replayed"] == "true"
    r = await client.post(URL, json={**ORDER, "side": "buy"}, headers=key)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "Idempotency-Key"
    assert len(fake.events) == 1 and fake.events[0].data.idempotency_key == "order-7"


@pytest.mark.parametrize("error", [BrokerUnavailable("down"), PublishTimeout("late")])
async def test_broker_failures_answer_503_and_free_the_key(
    client: httpx.AsyncClient, fake: FakePublisher, error: Exception
) -> None:
    fake.fail = error
    r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": "k-503"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "error" in r.json()
    fake.fail = None
    r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": "k-503"})
    assert r.status_code == 201 and r.json()["orderId"] == order_id_for("k-503")


async def test_health_and_readiness(client: httpx.AsyncClient, fake: FakePublisher) -> None:
    r = await client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    fake.up = False
    r = await client.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["broker"], body["database"]) == ("not ready", "down", "down")
    assert body["error"] == "broker and database unavailable" and r.headers["retry-after"] == "1"


async def test_extra_routes_and_lifespans_are_mounted(fake: FakePublisher) -> None:
    seen: list[str] = []

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.greeting)

    @contextlib.asynccontextmanager
    async def greeter(app: Starlette) -> AsyncIterator[None]:
        seen.append("db" if app.state.db is not None else "no db")
        app.state.greeting = "hi"
        yield
        seen.append("closed")

    routes = [Route("/api/orders/{id}", hello)]
    app = create_app(_settings(), publisher=fake, extra_routes=routes, extra_lifespans=[greeter])
    async with served(app) as client:
        assert (await client.get("/api/orders/x")).text == "hi"
    assert seen == ["db", "closed"]


async def test_the_event_carries_the_request_fingerprint(
    client: httpx.AsyncClient, fake: FakePublisher
) -> None:
    await client.post(URL, json=ORDER, headers={"Idempotency-Key": "hashed"})
    await client.post(URL, json=ORDER)
    expected = parse_order(orjson.dumps(ORDER), ("SOL", "USDC")).fingerprint()
    assert [e.data.request_hash for e in fake.events] == [expected, expected]


def test_key_derived_order_ids_are_stable_uuids() -> None:
    # Pinned: a change here would give every Idempotency-Key already used a different order.
    assert order_id_for("abc") == "11ff44dd-c2f4-5d7b-89f7-ea751ee4fc5b"
    assert order_id_for("abc") != order_id_for("abd")
    assert order_id_for(None) != order_id_for(None)


def test_the_producer_is_durable_and_idempotent() -> None:
    publisher = Publisher("127.0.0.1:9092", "t", request_timeout_ms=4000, linger_ms=2)
    assert publisher.config["acks"] == "all"
    assert publisher.config["enable_idempotence"] is True
    assert publisher.config["linger_ms"] == 2
    assert publisher.config["request_timeout_ms"] == 4000
