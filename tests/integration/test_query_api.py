"""The read API in the API app, against a real Postgres projection (and the real projector for waits)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec
import pytest
from msgspec.structs import replace

from events.codec import encode
from events.envelope import Event
from events.lifecycle import OrderState
from events.topics import Topics
from events.types import new_event
from projections.fold import LogRecord, decode_records, fold
from projections.store import ProjectionStore
from services import query
from services.config import Settings
from tests.api_harness import api_app
from tests.projection_fixtures import (
    log_end,
    produce,
    running_projector,
    settings_for,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def api(settings: Settings, schema: str, *, listen: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    app = api_app(
        settings, ingress_part=False, more=[query.part(settings, schema=schema, listen=listen)], schema=schema
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            yield client


def cancelled_at_seq_3(minutes: int = 0) -> list[Event]:
    """An order cancelled while routing: pending, routing, cancelled; it ends at seq 3."""
    requested, routing = order_at(minutes)[:2]
    data = {"request_id": str(uuid.uuid4()), "requested_at": routing.occurred_at, "from_status": "routing"}
    cancelled = new_event(
        "OrderCancelled", order_id=requested.order_id, seq=3, data=data, causation_id=routing.event_id,
        occurred_at=routing.occurred_at + timedelta(milliseconds=5),
    )  # fmt: skip
    return [requested, routing, cancelled]


def order_at(
    minutes: int, *, failed: bool = False, side: str = "sell", venue: str = "meteora"
) -> list[Event]:
    """One order's lifecycle created at T0 + minutes (so tests control the list order)."""
    events = lifecycle_events(failed=failed)
    shift = T0 + timedelta(minutes=minutes) - events[0].occurred_at
    out = []
    for e in events:
        e = replace(e, occurred_at=e.occurred_at + shift)
        if e.type == "OrderRequested":
            e = replace(e, data=replace(e.data, side=side))
        if e.type == "OrderBuilding":
            e = replace(e, data=replace(e.data, selected_venue=venue))
        if e.type in ("OrderSubmitted", "OrderConfirmed", "OrderFailed"):
            e = replace(e, data=replace(e.data, venue=venue))
        out.append(e)
    return out


async def write(conn: asyncpg.Connection, schema: str, topic: str, orders: list[list[Event]]) -> None:
    """Project these orders straight into the schema (the projector's own fold and SQL, no broker)."""
    records = [LogRecord(0, i, encode(e)) for i, e in enumerate(e for o in orders for e in o)]
    decoded, _ = decode_records(records)
    states: dict[str, OrderState] = {}
    store = ProjectionStore(schema, topic)
    async with conn.transaction():
        await store.write_rows(conn, fold(decoded, states))
        await store.write_positions(conn, {0: len(records), 1: 0, 2: 0}, {0: len(records) + 2, 1: 0, 2: 0})


@pytest.fixture
def settings(infra: Settings, topics: Topics) -> Settings:
    return settings_for(infra, topics)


async def test_one_order_in_the_seed_s_fields_with_its_freshness(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = order_at(0)
    await write(db, schema, topics.events, [events])
    async with api(settings, schema) as client:
        r = await client.get(f"/api/orders/{events[0].order_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    confirmed = events[-1].data
    assert body["orderId"] == events[0].order_id and body["status"] == "confirmed"
    assert (body["baseToken"], body["quoteToken"], body["side"], body["amountIn"]) == (
        "SOL",
        "USDC",
        "sell",
        1.5,
    )
    assert body["slippageBps"] == 100 and body["type"] == "market"
    assert body["selectedDex"] == "meteora" and body["txHash"] == confirmed.tx_hash
    assert body["executedPrice"] == confirmed.executed_price and body["amountOut"] == confirmed.amount_out
    assert body["minAcceptablePrice"] == 148.005 and body["failureReason"] is None
    assert body["attempts"] == 1 and body["lastSeq"] == 5
    assert [q["venue"] for q in body["quotes"]] == ["raydium", "meteora"]
    assert set(body["quotes"][0]) == {
        "venue",
        "price",
        "feeBps",
        "amountIn",
        "amountOut",
        "priceImpactBps",
        "quotedAt",
    }
    assert body["createdAt"] == "2025-03-14T09:00:00.000Z"
    assert body["projection"] == {
        "partition": 0, "appliedOffset": 5, "logEndOffset": 7, "lagEvents": 2,
        "appliedAt": body["projection"]["appliedAt"], "checkedAt": body["projection"]["checkedAt"],
    }  # fmt: skip


async def test_unknown_bad_and_wrong_method(settings: Settings, schema: str) -> None:
    async with api(settings, schema) as client:
        missing = await client.get("/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7")
        bad = await client.get("/api/orders/not-a-uuid")
        events_bad = await client.get("/api/orders/123/events")
        execute = await client.get("/api/orders/execute")
        post = await client.post("/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "orderId"
    assert events_bad.status_code == 400
    assert execute.status_code == 405 and "POST" in execute.headers["allow"]
    assert post.status_code == 405


async def test_events_come_back_as_the_log_has_them(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = order_at(0, failed=True)
    await write(db, schema, topics.events, [events])
    async with api(settings, schema) as client:
        r = await client.get(f"/api/orders/{events[0].order_id}/events")
        missing = await client.get("/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7/events")
    assert r.status_code == 200
    got = r.json()["events"]
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
    assert [e["status"] for e in got] == ["pending", "routing", "building", "submitted", "failed"]
    for event, body in zip(events, got, strict=True):
        body.pop("status"), body.pop("position")
        assert body == msgspec.json.decode(encode(event))
    assert missing.status_code == 404


async def _pages(client: httpx.AsyncClient, url: str) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        r = await client.get(url + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([o["orderId"] for o in body["orders"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


async def test_pagination_edges(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    async with api(settings, schema) as client:
        empty = (await client.get("/api/orders")).json()
        assert empty == {"orders": [], "nextCursor": None, "projection": None}
        orders = [order_at(i) for i in range(7)]
        await write(db, schema, topics.events, orders)
        newest_first = [o[0].order_id for o in reversed(orders)]
        assert await _pages(client, "/api/orders?limit=7") == [newest_first], "exactly one page: no cursor"
        assert await _pages(client, "/api/orders?limit=200") == [newest_first]
        pages = await _pages(client, "/api/orders?limit=3")
        assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]], "the last page is short"
        pages = await _pages(client, "/api/orders?limit=1")
        assert [p[0] for p in pages] == newest_first and len(pages) == 7
        first = (await client.get("/api/orders?limit=2")).json()
        cursor = first["nextCursor"]
        again = [(await client.get(f"/api/orders?limit=2&cursor={cursor}")).json() for _ in range(2)]
        assert again[0] == again[1], "a cursor can be reused"
        assert [o["orderId"] for o in again[0]["orders"]] == newest_first[2:4]
        other = await client.get(f"/api/orders?limit=2&status=failed&cursor={cursor}")
        assert other.status_code == 400 and other.json()["details"][0]["field"] == "cursor"
        forged = await client.get("/api/orders?cursor=bm90LWEtY3Vyc29y")
        assert forged.status_code == 400 and forged.json()["details"][0]["field"] == "cursor"
        summary = first["projection"]
        assert summary["partitions"] == 3 and summary["lagEvents"] == 2


async def test_filters(settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection) -> None:
    a = order_at(0, side="sell", venue="meteora")
    b = order_at(10, side="buy", venue="raydium")
    c = order_at(20, failed=True, side="buy", venue="meteora")
    d = order_at(30, side="sell", venue="raydium")[:2]  # still routing
    await write(db, schema, topics.events, [a, b, c, d])
    ids = {name: o[0].order_id for name, o in zip("abcd", (a, b, c, d), strict=True)}

    async def found(qs: str) -> list[str]:
        r = await client.get(f"/api/orders?{qs}")
        assert r.status_code == 200, r.text
        back = {v: k for k, v in ids.items()}
        return [back[o["orderId"]] for o in r.json()["orders"]]

    async with api(settings, schema) as client:
        assert await found("") == ["d", "c", "b", "a"]
        assert await found("status=confirmed") == ["b", "a"]
        assert await found("status=routing") == ["d"]
        assert await found("side=buy") == ["c", "b"]
        assert await found("venue=meteora") == ["c", "a"]
        assert await found("venue=meteora&status=failed") == ["c"]
        assert await found("from=2025-03-14T09:10:00Z") == ["d", "c", "b"]
        assert await found("to=2025-03-14T09:10:00Z") == ["a"], "to is exclusive"
        assert await found("from=2025-03-14T10:05:00%2B01:00&to=2025-03-14T09:25:00Z") == ["c", "b"]
        assert await found("side=sell&limit=1") == ["d"]
        assert await found("venue=jupiter") == []


@pytest.mark.parametrize(
    ("qs", "fields"),
    [
        ("status=done", ["status"]),
        ("side=BUY", ["side"]),
        ("limit=0", ["limit"]),
        ("limit=201", ["limit"]),
        ("limit=ten", ["limit"]),
        ("from=yesterday", ["from"]),
        ("from=2025-03-14T09:00:00", ["from"]),
        ("from=2025-03-14T10:00:00Z&to=2025-03-14T09:00:00Z", ["to"]),
        ("status=pending&status=failed", ["status"]),
        ("status=nope&side=up&limit=999", ["status", "side", "limit"]),
        ("cursor=%%%", ["cursor"]),
        ("waitMs=1000&minSeq=1&bogus=1", ["waitMs", "minSeq", "bogus"]),  # once answered 200, ignoring all
    ],
)
async def test_bad_list_parameters_are_400_naming_each_field(
    settings: Settings, schema: str, qs: str, fields: list[str]
) -> None:
    async with api(settings, schema) as client:
        r = await client.get(f"/api/orders?{qs}")
    assert r.status_code == 400
    body = r.json()
    assert [d["field"] for d in body["details"]] == fields and body["error"].startswith("invalid query")


@pytest.mark.parametrize(
    ("qs", "field"),
    [("minSeq=0", "minSeq"), ("minSeq=x", "minSeq"), ("waitMs=10001", "waitMs"), ("minPosition=3", "minPosition"),
     ("minPosition=a:1", "minPosition"), ("waitMs=-1", "waitMs")],
)  # fmt: skip
async def test_bad_wait_parameters_are_400(settings: Settings, schema: str, qs: str, field: str) -> None:
    async with api(settings, schema) as client:
        r = await client.get(f"/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7?{qs}")
    assert r.status_code == 400 and [d["field"] for d in r.json()["details"]] == [field]


@pytest.mark.parametrize("listen", [True, False], ids=["notify", "polling"])
async def test_min_seq_waits_for_the_projector_then_answers(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection, listen: bool
) -> None:
    events = lifecycle_events()
    oid = events[0].order_id
    async with running_projector(settings, schema), api(settings, schema, listen=listen) as client:
        # The reader asks before anything is in the log; the events arrive while it waits.
        reader = asyncio.create_task(client.get(f"/api/orders/{oid}?minSeq=5&waitMs=10000"))
        events_reader = asyncio.create_task(client.get(f"/api/orders/{oid}/events?minSeq=3&waitMs=10000"))
        await produce(settings.bootstrap_servers, topics.events, events)
        r, e = await asyncio.wait_for(asyncio.gather(reader, events_reader), 30)
        assert r.status_code == 200 and r.json()["lastSeq"] == 5 and r.json()["status"] == "confirmed"
        assert e.status_code == 200 and len(e.json()["events"]) >= 3
        # Already there: no wait at all.
        assert (await client.get(f"/api/orders/{oid}?minSeq=1&waitMs=0")).status_code == 200


async def test_min_seq_timeout_is_503_with_how_far_it_is(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = order_at(0)
    await write(db, schema, topics.events, [events[:3]])
    oid = events[0].order_id
    async with api(settings, schema) as client:
        late = await client.get(f"/api/orders/{oid}?minSeq=4&waitMs=200")
        never = await client.get("/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7?minSeq=1&waitMs=0")
        ok = await client.get(f"/api/orders/{oid}?minSeq=3&waitMs=200")
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    body = late.json()
    assert body["lastSeq"] == 3 and "minSeq=4" in body["error"] and body["projection"]["partition"] == 0
    assert never.status_code == 503 and never.json()["lastSeq"] is None, (
        "not 404: the order may be on its way"
    )
    assert ok.status_code == 200 and ok.json()["status"] == "building"


async def test_an_ended_order_below_min_seq_answers_at_once_as_it_ended(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    # It can never reach minSeq=4 (no event follows a terminal one): a 503 "retry" would make the client spin.
    events = cancelled_at_seq_3()
    await write(db, schema, topics.events, [events])
    oid = events[0].order_id
    async with api(settings, schema) as client:
        started = time.monotonic()
        r = await client.get(f"/api/orders/{oid}?minSeq=4&waitMs=3000")
        e = await client.get(f"/api/orders/{oid}/events?minSeq=99&waitMs=3000")
        took = time.monotonic() - started
        both = await client.get(f"/api/orders/{oid}?minSeq=4&minPosition=0:1000&waitMs=200")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["lastSeq"]) == ("cancelled", 3)
    assert e.status_code == 200 and [x["seq"] for x in e.json()["events"]] == [1, 2, 3]
    assert took < 2.0, f"answered at once, not after waiting: {took:.2f} s"
    assert both.status_code == 503 and "minPosition=0:1000" in both.json()["error"], (
        "a position not yet applied is still waited for"
    )


async def test_min_position_waits_for_the_partition(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = lifecycle_events()
    oid = events[0].order_id
    async with running_projector(settings, schema), api(settings, schema) as client:
        await produce(settings.bootstrap_servers, topics.events, events[:1])
        ends = await log_end(settings.bootstrap_servers, topics.events)
        partition = next(p for p, n in ends.items() if n > 0)
        r = await client.get(f"/api/orders/{oid}?minPosition={partition}:0&waitMs=10000")
        assert r.status_code == 200 and r.json()["lastSeq"] == 1
        far = await client.get(f"/api/orders/{oid}?minPosition={partition}:1000&waitMs=100")
        assert far.status_code == 503
        assert far.json()["projection"]["partition"] == partition
        assert far.json()["projection"]["appliedOffset"] >= 1
        gone = await client.get(f"/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7?minPosition={partition}:0")
        assert gone.status_code == 404, "the projection is past the position and the order is not there"


async def test_a_database_that_is_down_is_a_503(settings: Settings, schema: str) -> None:
    down = dataclasses.replace(settings, database_url="postgresql://oee@127.0.0.1:1/oee")
    async with api(down, schema, listen=False) as client:
        r = await client.get("/api/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7")
        listing = await client.get("/api/orders")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert listing.status_code == 503
