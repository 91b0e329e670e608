"""Limit and sniper orders and cancels through the API, on the real broker and Postgres: the ingress
validates and appends, a router core (in process) answers, the projector projects, the reads show it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from events.topics import Topics
from services import query
from services.config import Settings
from services.ingress.cancel import CancelMemory, Sent
from services.ingress.options import IngressOptions
from services.ingress.publisher import Position
from tests.api_harness import api_app
from tests.integration.router_harness import close_venues, running, sim_venues
from tests.integration.test_query_api import write
from tests.integration.trigger_harness import pumping
from tests.projection_fixtures import running_projector, settings_for, wait_until
from tests.router_fakes import FaultyVenue
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration

LIMIT = {"type": "limit", "baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.0,
         "limitPrice": 500.0}  # fmt: skip
SNIPER = {"type": "sniper", "baseToken": "BONK", "quoteToken": "USDC", "amountIn": 500.0, "maxPrice": 0.0001,
          "minLiquidity": 50_000}  # fmt: skip
MARKET = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}


@contextlib.asynccontextmanager
async def system(
    infra: Settings, topics: Topics, schema: str, venues: dict[str, FaultyVenue]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API (ingress + reads) on the test's topics and schema, a router core, and the projector."""
    settings = settings_for(infra, topics)
    app = api_app(
        settings, options=IngressOptions(), more=[query.part(settings, schema=schema)], schema=schema
    )
    async with (
        running(infra, topics, venues, _options()) as core,
        pumping(infra.bootstrap_servers, topics.requests, core.handle),
        running_projector(settings, schema),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            yield client


def _options():  # type: ignore[no-untyped-def]
    from services.router.options import RouterOptions

    return RouterOptions(quote_timeout_s=1.0, submit_retry_s=0.05)


@pytest.fixture
async def venues() -> AsyncIterator[dict[str, FaultyVenue]]:
    made = sim_venues(latency=1.0)  # a market order stays submitted a second: long enough to be refused
    yield made
    await close_venues(made)


async def status_of(client: httpx.AsyncClient, order_id: str, want: str) -> dict:  # type: ignore[type-arg]
    """The order once its projected status is `want`."""
    found: dict = {}  # type: ignore[type-arg]

    async def reached() -> bool:
        reply = await client.get(f"/api/orders/{order_id}")
        found.update(reply.json() if reply.status_code == 200 else {})
        return found.get("status") == want

    await wait_until(reached, 30, f"order {order_id} {want}", lambda: str(found))
    return found


async def test_a_limit_order_rests_is_cancelled_once_and_a_repeat_changes_nothing(
    infra: Settings, topics: Topics, schema: str, venues: dict[str, FaultyVenue]
) -> None:
    async with system(infra, topics, schema, venues) as client:
        placed = await client.post("/api/orders/execute", json=LIMIT)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["orderId"]
        resting = await status_of(client, order_id, "open")
        assert (resting["type"], resting["limitPrice"], resting["slippageBps"]) == ("limit", 500.0, 0)
        assert resting["expiresAt"] is not None and resting["triggerPrice"] is None
        listed = (await client.get("/api/orders", params={"type": "limit", "status": "open"})).json()[
            "orders"
        ]
        assert [o["orderId"] for o in listed] == [order_id]
        assert (await client.get("/api/orders", params={"type": "market"})).json()["orders"] == []

        cancelled = await client.delete(f"/api/orders/{order_id}")
        assert cancelled.status_code == 202, cancelled.text
        body = cancelled.json()
        assert (body["orderId"], body["cancel"], body["status"]) == (order_id, "requested", "open")
        again = await client.delete(f"/api/orders/{order_id}")  # before it is projected: the same request
        assert again.status_code == 202 and again.json()["requestId"] == body["requestId"]
        await status_of(client, order_id, "cancelled")
        after = await client.delete(f"/api/orders/{order_id}")
        assert after.status_code == 202
        assert after.json() == {
            "orderId": order_id,
            "status": "cancelled",
            "cancel": "nothing to cancel: the order is cancelled",
        }
        events = (await client.get(f"/api/orders/{order_id}/events")).json()["events"]
        assert [e["type"] for e in events] == ["OrderRequested", "OrderOpened", "OrderCancelled"]
        assert events[2]["data"]["request_id"] == body["requestId"]


async def test_a_cancel_after_the_submit_is_refused_and_the_market_order_fills(
    infra: Settings, topics: Topics, schema: str, venues: dict[str, FaultyVenue]
) -> None:
    async with system(infra, topics, schema, venues) as client:
        placed = await client.post("/api/orders/execute", json=MARKET)
        order_id = placed.json()["orderId"]
        await status_of(client, order_id, "submitted")
        assert (await client.delete(f"/api/orders/{order_id}")).status_code == 202
        await status_of(client, order_id, "confirmed")
        events = (await client.get(f"/api/orders/{order_id}/events")).json()["events"]
        kinds = [e["type"] for e in events]
        assert kinds == [
            "OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderCancelRefused",
            "OrderConfirmed",
        ]  # fmt: skip
        refused = events[4]
        assert (refused["status"], refused["data"]["reason"]) == ("submitted", "submitted")


async def test_a_sniper_is_placed_for_a_token_no_venue_lists_yet(
    infra: Settings, topics: Topics, schema: str, venues: dict[str, FaultyVenue]
) -> None:
    async with system(infra, topics, schema, venues) as client:
        placed = await client.post("/api/orders/execute", json=SNIPER)
        assert placed.status_code == 201, placed.text
        order = await status_of(client, placed.json()["orderId"], "open")
        assert (order["baseToken"], order["side"], order["maxPrice"], order["minLiquidity"]) == (
            "BONK", "buy", 0.0001, 50_000.0,
        )  # fmt: skip
        refused = await client.post("/api/orders/execute", json={**SNIPER, "side": "sell", "slippageBps": 5})
        assert refused.status_code == 400
        assert [d["field"] for d in refused.json()["details"]] == ["slippageBps", "side"]


async def test_another_accounts_order_and_unknown_or_bad_ids_are_refused(
    infra: Settings, topics: Topics, schema: str
) -> None:
    settings = settings_for(infra, topics)
    alices = lifecycle_events(account="alice")[:2]  # routing: cancellable, but not `local`'s
    conn = await asyncpg.connect(infra.database_url)
    try:
        await write(conn, schema, topics.events, [alices])
    finally:
        await conn.close()
    app = api_app(settings, options=IngressOptions(cancel_wait_s=0.0), schema=schema)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            theirs = await client.delete(f"/api/orders/{alices[0].order_id}")
            unknown = await client.delete("/api/orders/9b2f7c1e-0000-4000-8000-000000000000")
            assert theirs.status_code == unknown.status_code == 404
            assert theirs.json()["error"].replace(alices[0].order_id, "X") == unknown.json()["error"].replace(
                "9b2f7c1e-0000-4000-8000-000000000000", "X"
            ), "another account's order reads exactly like an unknown one"
            bad = await client.delete("/api/orders/not-an-id?waitMs=99999")
            assert bad.status_code == 400
            assert [d["field"] for d in bad.json()["details"]] == ["orderId", "waitMs"]
            slow = await client.delete("/api/orders/9b2f7c1e-0000-4000-8000-000000000000?waitMs=300")
            assert slow.status_code == 404


def test_the_memory_of_sent_cancels_is_bounded_and_forgets_the_oldest() -> None:
    memory = CancelMemory(ttl_s=60.0, max_entries=3)
    sent = Sent("r", Position("t", 0, 0))
    for i in range(5):
        memory.put("local", f"o{i}", sent, now=float(i))
    assert len(memory) == 3
    assert memory.get("local", "o0", 5.0) is None and memory.get("local", "o4", 5.0) == sent
    assert memory.get("local", "o4", 100.0) is None, "a minute later a repeat is sent again"
    assert memory.get("alice", "o4", 5.0) is None, "per account"


def test_expires_at_is_bounded_by_the_ingress_option() -> None:
    options = IngressOptions.from_env({"INGRESS_MAX_RESTING_S": "3600"})
    assert options.max_resting_s == 3600.0
    from services.envvars import ConfigError

    with pytest.raises(ConfigError, match="INGRESS_MAX_RESTING_S"):
        IngressOptions.from_env({"INGRESS_MAX_RESTING_S": str(7 * 86_400)})
    assert datetime.now(UTC) + timedelta(seconds=options.max_resting_s) > datetime.now(UTC)
