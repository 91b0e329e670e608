"""The HTTP layer with a fake publisher (the broker's failures on demand) and the real database (durable
Idempotency-Keys): answers, error shapes, Idempotency-Key outcomes, broker failures, readiness.

The real producer and broker are exercised in tests/integration/test_ingress_api.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from events.envelope import Event
from events.types import OrderRequested
from services.config import Settings
from services.ingress.intake import order_id_for
from services.ingress.options import IngressOptions
from services.ingress.publisher import BrokerUnavailable, Position, Publisher, PublishTimeout
from services.ingress.validation import parse_order
from tests.api_harness import api_app, served

pytestmark = pytest.mark.integration

ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}
URL = "/api/orders/execute"
JSON = {"Content-Type": "application/json"}


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


def _down(infra: Settings) -> Settings:
    # Port 1 on loopback refuses at once: the database is down for this app.
    return dataclasses.replace(infra, database_url="postgresql://oee@127.0.0.1:1/oee")


@pytest.fixture
async def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(fake: FakePublisher, infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = api_app(infra, publisher=fake, options=IngressOptions(max_body_bytes=1024))
    async with served(app) as c:
        yield c


@pytest.fixture
def key(unique: str) -> str:
    """An Idempotency-Key no earlier run used: keys are durable, in the shared database."""
    return f"order-{unique}"


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
    r = await client.post(URL, content=big, headers=JSON)
    assert r.status_code == 413
    assert r.json()["details"] == [{"field": "body", "message": "must be at most 1024 bytes"}]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only the streamed size can tell
        for _ in range(5):
            yield b" " * 300

    r = await client.post(URL, content=chunks(), headers=JSON)
    assert r.status_code == 413 and r.json()["error"] == "request body too large"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
async def test_an_order_that_is_not_declared_json_is_415_and_writes_nothing(
    client: httpx.AsyncClient, fake: FakePublisher, content_type: str | None
) -> None:
    """A cross-site form or `text/plain` fetch needs no CORS preflight: only application/json places orders."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = await client.post(URL, content=orjson.dumps(ORDER), headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["details"] == [{"field": "Content-Type", "message": "must be application/json"}]
    ok = await client.post(
        URL, content=orjson.dumps(ORDER), headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert ok.status_code == 201
    assert len(fake.events) == 1


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
    client: httpx.AsyncClient, fake: FakePublisher, key: str
) -> None:
    headers = {"Idempotency-Key": key}
    fake.gate = asyncio.Event()
    first = asyncio.create_task(client.post(URL, json=ORDER, headers=headers))
    await asyncio.wait_for(fake.entered.wait(), 5)  # the first is parked at the gate, mid-publish
    r = await client.post(URL, json=ORDER, headers=headers)
    assert r.status_code == 409 and r.headers["retry-after"] == "1"
    assert (await client.post(URL, json={**ORDER, "amountIn": 2}, headers=headers)).status_code == 422
    fake.gate.set()
    r1 = await first
    assert r1.status_code == 201 and r1.json()["orderId"] == order_id_for(key)
    again = await client.post(URL, json={**ORDER, "slippageBps": 100.0, "extra": True}, headers=headers)
    assert again.status_code == 201 and again.json() == r1.json()
    assert again.headers["idempotent-replayed"] == "true"
    r = await client.post(URL, json={**ORDER, "side": "buy"}, headers=headers)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "Idempotency-Key"
    assert len(fake.events) == 1 and fake.events[0].data.idempotency_key == key


async def test_a_write_that_certainly_failed_frees_the_key(
    client: httpx.AsyncClient, fake: FakePublisher, key: str
) -> None:
    fake.fail = BrokerUnavailable("down")
    r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": key})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "error" in r.json()
    fake.fail = None
    other = {**ORDER, "amountIn": 3}  # nothing was written: the key is free, for any body
    r = await client.post(URL, json=other, headers={"Idempotency-Key": key})
    assert r.status_code == 201 and r.json()["orderId"] == order_id_for(key)
    assert [e.data.amount_in for e in fake.events] == [3]


async def test_an_unknown_outcome_keeps_the_key_bound_to_its_body(
    client: httpx.AsyncClient, fake: FakePublisher, key: str
) -> None:
    fake.fail = PublishTimeout("late")
    r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": key})
    assert r.status_code == 503 and "outcome unknown" in r.json()["error"]
    fake.fail = None
    # The first write may have landed: another body could never be what executes under this order id.
    other = await client.post(URL, json={**ORDER, "amountIn": 3}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    # The same body retries at once (no lease to wait out) under the same order id.
    r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": key})
    assert r.status_code == 201 and r.json()["orderId"] == order_id_for(key)


async def test_a_key_that_cannot_be_checked_is_503_and_nothing_is_written(
    infra: Settings, fake: FakePublisher, key: str
) -> None:
    async with served(api_app(_down(infra), publisher=fake)) as client:
        r = await client.post(URL, json=ORDER, headers={"Idempotency-Key": key})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert fake.events == []
        unkeyed = await client.post(URL, json=ORDER)
        assert unkeyed.status_code == 201 and len(fake.events) == 1


async def test_health_and_readiness(infra: Settings, fake: FakePublisher) -> None:
    async with served(api_app(_down(infra), publisher=fake)) as client:
        r = await client.get("/health")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        fake.up = False
        r = await client.get("/ready")
        assert r.status_code == 503
        body = r.json()
        assert (body["status"], body["broker"], body["database"]) == ("not ready", "down", "down")
        assert body["error"] == "broker and database unavailable" and r.headers["retry-after"] == "1"


async def test_ready_asks_the_broker_and_the_database_at_most_once_a_second(
    infra: Settings, fake: FakePublisher
) -> None:
    probes = 0
    probe = fake.probe

    async def counted(timeout_s: float) -> bool:
        nonlocal probes
        probes += 1
        return await probe(timeout_s)

    fake.probe = counted  # type: ignore[method-assign]
    app = api_app(infra, publisher=fake)
    async with served(app) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(*(client.get("/ready") for _ in range(200)))
        assert probes == 1, "200 concurrent calls share one probe"
        while loop.time() - started < 2.5:  # keep calling for 2.5 s: at most one probe per second
            answers.append(await client.get("/ready"))
        elapsed = loop.time() - started
    assert all(a.status_code == 200 for a in answers)
    assert len(answers) > 250 and probes <= elapsed + 1, (probes, elapsed)


async def test_the_event_carries_the_request_fingerprint_and_the_account(
    client: httpx.AsyncClient, fake: FakePublisher, key: str
) -> None:
    await client.post(URL, json=ORDER, headers={"Idempotency-Key": key})
    await client.post(URL, json=ORDER)
    expected = parse_order(orjson.dumps(ORDER), ("SOL", "USDC")).fingerprint()
    assert [e.data.request_hash for e in fake.events] == [expected, expected]
    assert [e.data.account_id for e in fake.events] == ["local", "local"]  # AUTH=off: the implicit account


def test_key_derived_order_ids_are_stable_uuids_per_account() -> None:
    # Pinned: a change here would give every Idempotency-Key already used a different order.
    assert order_id_for("abc") == "11ff44dd-c2f4-5d7b-89f7-ea751ee4fc5b"
    assert order_id_for("abc", "local") == order_id_for("abc")  # keys from before accounts keep their ids
    assert order_id_for("abc", "alice") == "5fccd214-3663-55b5-85e2-f03ac5540929"
    assert len({order_id_for("abc", a) for a in ("local", "alice", "bob")}) == 3
    assert order_id_for("abc") != order_id_for("abd")
    assert order_id_for(None) != order_id_for(None)


def test_the_producer_is_durable_and_idempotent() -> None:
    publisher = Publisher("127.0.0.1:9092", "t", request_timeout_ms=4000, linger_ms=2)
    assert publisher.config["acks"] == "all"
    assert publisher.config["enable.idempotence"] is True
    assert publisher.config["linger.ms"] == 2
    assert publisher.config["request.timeout.ms"] == 4000
    # Keys land where aiokafka and the Java client put them (tests/integration/test_rdkafka_partitioner.py).
    assert publisher.config["partitioner"] == "murmur2_random"
