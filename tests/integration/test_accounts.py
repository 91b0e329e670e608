"""Accounts at the edge, against the real broker and database, through the whole API app under uvicorn.

Under `AUTH=keys`: no request without a valid key reads or writes anything (every route of the app is
walked); two accounts each see only their own orders through GET, list, events, `/ws/orders/{id}` and `/ws`,
another's exactly as an unknown id; the same Idempotency-Key from two accounts makes two orders; the order
limits answer 429 with their headers; browsers authenticate WebSockets with a subprotocol and foreign origins
are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus

from events.codec import decode, encode
from events.envelope import Event
from events.lifecycle import OrderState
from events.topics import Topics
from projections.fold import LogRecord, decode_records, fold
from projections.store import ProjectionStore
from services import ingress, query
from services.accounts import store
from services.accounts.options import AccountsOptions
from services.api.app import create_app
from services.config import Settings
from services.gateway import app as gateway
from services.gateway.options import GatewayOptions
from services.http.parts import Access, Policy
from services.lag import web as lag
from services.lag.config import LagOptions
from services.metrics import metrics_part
from services.spec import part as specs
from services.web import routes as pages
from tests.api_harness import RunningApp, api_app, uvicorn_serving
from tests.integration.gateway_harness import append, collect, own_schema
from tests.integration.test_ingress_api import read_topic
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration

ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}
KEYS = AccountsOptions(auth="keys", order_rate=0, max_open_orders=0)
NOT_FOUND_S = 1.0  # the gateway's not-found timeout here: how long an unknown (or foreign) stream waits


@dataclasses.dataclass
class Keys:
    alice: str
    bob: str
    ops: str
    disabled: str
    revoked: str
    names: dict[str, str]


@dataclasses.dataclass
class System:
    running: RunningApp
    settings: Settings
    topics: Topics
    orders: dict[str, list[str]]  # account name -> its order ids

    def client(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.AsyncClient(base_url=self.running.http, headers=headers, timeout=30)


@pytest.fixture
async def keys(infra: Settings, unique: str) -> Keys:
    names = {who: f"{who}-{unique}" for who in ("alice", "bob", "ops", "gone")}
    conn = await asyncpg.connect(infra.database_url)
    try:
        alice = await store.create_account(conn, names["alice"])
        bob = await store.create_account(conn, names["bob"])
        ops = await store.create_account(conn, names["ops"], operator=True)
        gone = await store.create_account(conn, names["gone"])
        await store.set_disabled(conn, names["gone"], True)
        old = await store.issue_key(conn, names["alice"])
        await store.revoke_key(conn, old.key_id)
    finally:
        await conn.close()
    return Keys(alice.key, bob.key, ops.key, gone.key, old.key, names)


async def project(settings: Settings, schema: str, topic: str, events: list[Event]) -> None:
    """Rows as the projector writes them (its own fold and SQL), into the test's schema."""
    records = [LogRecord(0, i, encode(e)) for i, e in enumerate(events)]
    decoded, _ = decode_records(records)
    states: dict[str, OrderState] = {}
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            projection = ProjectionStore(schema, topic)
            await projection.write_rows(conn, fold(decoded, states))
            await projection.write_positions(conn, {0: len(records)}, {0: len(records)})
    finally:
        await conn.close()


@pytest.fixture
async def system(infra: Settings, topics: Topics, unique: str, keys: Keys) -> AsyncIterator[System]:
    """The whole API under `AUTH=keys` on the test's topics and schema, with two orders each for alice and
    bob in the log and the projection."""
    async with own_schema(infra, topics, unique) as settings:
        schema = f"gw{unique}"
        orders: dict[str, list[str]] = {}
        events: list[Event] = []
        for who in ("alice", "bob"):
            for failed in (False, True):
                stream = lifecycle_events(failed=failed, account=keys.names[who])
                orders.setdefault(who, []).append(stream[0].order_id)
                events.extend(stream)
        await append(settings.bootstrap_servers, topics.events, events)
        await project(settings, schema, topics.events, events)
        options = GatewayOptions(not_found_timeout_s=NOT_FOUND_S, log_scan_delay_s=0.1)
        parts = [
            ingress.part(settings),
            query.part(settings, schema=schema),
            gateway.part(settings, options),
            pages.part(),
            lag.part(settings, LagOptions(interval_s=0)),
            metrics_part(),
            specs.part(),
        ]
        app = create_app(settings, parts, accounts=KEYS, schema=schema)
        async with uvicorn_serving(app) as running:
            assert await app.state.gateway.wait_ready()
            await asyncio.wait_for(app.state.ingress.publisher.wait_connected(), 30)
            yield System(running, settings, topics, orders)


MOUNTED_FILES = {"/app": ["/", "/app.js"], "/docs/assets": ["/swagger-ui.css"]}
"""Files that exist under each mount of the API, to walk."""


def _paths(routes: list[Any], order_id: str) -> list[tuple[str, str, list[str]]]:
    """(kind, concrete path, methods) of every route of the app: path parameters filled with `order_id`."""
    out: list[tuple[str, str, list[str]]] = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            out.append(("ws", route.path.replace("{order_id}", order_id), []))
        elif isinstance(route, Route):
            methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            out.append(("http", route.path.replace("{order_id}", order_id), methods))
        elif isinstance(route, Mount):
            for file in MOUNTED_FILES[route.path]:
                out.append(("http", route.path + file, ["GET"]))
        else:
            raise AssertionError(f"a route kind this walk does not know: {route!r}")
    return out


async def _handshake_status(url: str, **kwargs: Any) -> int:
    """The HTTP status a WebSocket handshake was refused with (101 when it was accepted)."""
    try:
        async with websockets.connect(url, open_timeout=10, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_no_request_without_a_valid_key_reads_or_writes_anything(
    system: System, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = system.running.app
    policy = Policy.of(
        [
            ingress.part(system.settings),
            query.part(system.settings),
            gateway.part(system.settings),
            pages.part(),
            lag.part(system.settings),
            metrics_part(),
            specs.part(),
        ]
    )
    alice_order = system.orders["alice"][0]
    walked = _paths(app.routes, alice_order)
    assert {p for _, p, _ in walked} >= {
        "/api/orders/execute", "/api/orders", f"/api/orders/{alice_order}", f"/api/orders/{alice_order}/events",
        f"/ws/orders/{alice_order}", "/ws", "/gateway/stats", "/api/lag", "/dashboard", "/metrics", "/health",
        "/ready", "/", "/app/", "/openapi.json", "/asyncapi.json", "/docs", "/docs/assets/swagger-ui.css",
    }  # fmt: skip
    wrong = {
        "no key": (None, 401),
        "not a key": ("Bearer hunter2", 401),
        "unknown key": ("Bearer oee_000000000000_" + "A" * 43, 401),
        "another scheme": (f"Basic {keys.alice}", 401),
        "wrong secret": (f"Bearer {keys.alice[:-4]}AAAA", 401),
        "revoked key": (f"Bearer {keys.revoked}", 401),
        "disabled account": (f"Bearer {keys.disabled}", 403),
    }
    public = 0
    async with system.client() as client:
        for kind, path, methods in walked:
            access = policy.access(path)
            for what, (auth, status) in wrong.items():
                headers = {"Authorization": auth} if auth else {}
                if kind == "ws":
                    got = await _handshake_status(system.running.ws(path), additional_headers=headers)
                    assert got == status, (path, what, got)
                    continue
                for method in methods:
                    r = await client.request(
                        method, path, headers=headers, json=ORDER if method == "POST" else None
                    )
                    if access is Access.PUBLIC:
                        public += 1
                        assert r.status_code in (200, 503), (method, path, what, r.status_code)
                        assert alice_order not in r.text and keys.names["alice"] not in r.text
                        continue
                    assert r.status_code == status, (method, path, what, r.status_code, r.text)
                    assert r.json()["error"] and r.json()["details"] == []
                    if status == 401:
                        assert r.headers["www-authenticate"].startswith("Bearer"), (method, path)
                    assert keys.names["alice"] not in r.text
        # A trader's valid key on an operator route: 403; an operator's: through.
        for path in ("/metrics", "/api/lag", "/gateway/stats"):
            trader = await client.get(path, headers={"Authorization": f"Bearer {keys.alice}"})
            assert trader.status_code == 403 and "operator" in trader.json()["error"], path
            operator = await client.get(path, headers={"Authorization": f"Bearer {keys.ops}"})
            assert operator.status_code in (200, 503), (path, operator.status_code)
            assert operator.status_code != 403
        scraped = (await client.get("/metrics", headers={"Authorization": f"Bearer {keys.ops}"})).text
        for reason in ("unauthenticated", "forbidden", "operator_only"):
            assert f'oee_api_refused_total{{reason="{reason}"}}' in scraped, reason
    assert public > 0
    assert await read_topic(system.settings, system.topics.requests) == [], "a refused request wrote an order"
    # What the server side logged (the test's own clients log their request headers at debug: not ours).
    server = [r for r in caplog.records if not r.name.startswith(("websockets.client", "httpx", "httpcore"))]
    logged = "\n".join(r.getMessage() for r in server)
    assert "refused http" in logged and "refused websocket" in logged, "the edge logs refusals (at debug)"
    assert "without completing handshake" not in logged, "a refused handshake logged as a server error"
    assert not [r for r in server if r.levelno >= logging.ERROR], [r.getMessage() for r in server]
    for key in (keys.alice, keys.revoked, keys.disabled, keys.ops):
        assert key.split("_", 2)[2] not in logged, "a key's secret reached the logs"


async def test_each_account_sees_only_its_own_orders(system: System, keys: Keys) -> None:
    alice_orders, bob_orders = system.orders["alice"], system.orders["bob"]
    unknown = "00000000-0000-4000-8000-000000000000"
    async with system.client(keys.alice) as alice, system.client(keys.bob) as bob:
        listed = (await alice.get("/api/orders")).json()["orders"]
        assert {o["orderId"] for o in listed} == set(alice_orders)
        assert {o["orderId"] for o in (await bob.get("/api/orders")).json()["orders"]} == set(bob_orders)
        mine = await alice.get(f"/api/orders/{alice_orders[0]}")
        assert mine.status_code == 200 and mine.json()["orderId"] == alice_orders[0]
        events = await alice.get(f"/api/orders/{alice_orders[0]}/events")
        assert events.status_code == 200 and len(events.json()["events"]) == 5
        assert events.json()["events"][0]["data"]["account_id"] == keys.names["alice"]
        for path in ("/api/orders/{}", "/api/orders/{}/events", "/api/orders/{}?minSeq=9&waitMs=200"):
            theirs = await bob.get(path.format(alice_orders[0]))
            nobody = await bob.get(path.format(unknown))
            # Another account's order is answered exactly like an id that does not exist: never 403.
            assert theirs.status_code == nobody.status_code != 200
            assert theirs.json()["error"].replace(alice_orders[0], "ID") == nobody.json()["error"].replace(
                unknown, "ID"
            )
            assert theirs.headers.keys() == nobody.headers.keys()

    # One order's stream: the owner gets every frame; another account gets what an unknown id gets.
    def ws(key: str, path: str) -> Any:
        return websockets.connect(
            system.running.ws(path), additional_headers={"Authorization": f"Bearer {key}"}
        )

    async with ws(keys.alice, f"/ws/orders/{alice_orders[0]}") as sock:
        own = await collect(sock, 15)
    assert own.seqs == [1, 2, 3, 4, 5] and own.code == 1000
    async with ws(keys.bob, f"/ws/orders/{alice_orders[0]}") as sock:
        theirs = await collect(sock, 15)
    async with ws(keys.bob, f"/ws/orders/{unknown}") as sock:
        nothing = await collect(sock, 15)
    assert theirs.frames == nothing.frames == []
    assert theirs.code == nothing.code == 4404 and theirs.reason == nothing.reason

    # The multiplexed socket: subscribing to another's order looks like subscribing to an unknown one.
    async with ws(keys.bob, "/ws") as sock:
        for oid in (alice_orders[1], unknown, bob_orders[0]):
            await sock.send(orjson.dumps({"action": "subscribe", "orderId": oid}).decode())
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            while sum(1 for f in frames if f["type"] in ("end", "error")) < 3:
                frames.append(orjson.loads(await sock.recv()))
    by_order: dict[str, list[dict[str, Any]]] = {}
    for f in frames:
        if f["type"] != "heartbeat":
            by_order.setdefault(f["orderId"], []).append(f)
    strip = [{k: v for k, v in f.items() if k != "orderId"} for f in by_order[alice_orders[1]]]
    assert strip == [{k: v for k, v in f.items() if k != "orderId"} for f in by_order[unknown]]
    assert [f["type"] for f in by_order[alice_orders[1]]] == ["subscribed", "error"]
    assert by_order[alice_orders[1]][-1]["code"] == 4404
    assert [f.get("seq") for f in by_order[bob_orders[0]] if "seq" in f] == [1, 2, 3, 4, 5]


async def test_a_resumed_stream_checks_the_owner_too(system: System, keys: Keys) -> None:
    """`fromSeq` past the first event: the owner is still known from it (frames up to fromSeq are skipped)."""
    oid = system.orders["alice"][0]
    headers = {"Authorization": f"Bearer {keys.alice}"}
    async with websockets.connect(
        system.running.ws(f"/ws/orders/{oid}?fromSeq=3"), additional_headers=headers
    ) as s:
        resumed = await collect(s, 15)
    assert resumed.seqs == [4, 5] and resumed.code == 1000
    headers = {"Authorization": f"Bearer {keys.bob}"}
    async with websockets.connect(
        system.running.ws(f"/ws/orders/{oid}?fromSeq=3"), additional_headers=headers
    ) as s:
        foreign = await collect(s, 15)
    assert foreign.frames == [] and foreign.code == 4404


async def test_the_same_idempotency_key_from_two_accounts_makes_two_orders(
    system: System, keys: Keys
) -> None:
    key = {"Idempotency-Key": "shared-checkout-1"}
    async with system.client(keys.alice) as alice, system.client(keys.bob) as bob:
        a = await alice.post("/api/orders/execute", json=ORDER, headers=key)
        b = await bob.post("/api/orders/execute", json={**ORDER, "side": "buy"}, headers=key)
        again = await alice.post("/api/orders/execute", json=ORDER, headers=key)
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert "idempotent-replayed" not in b.headers, "bob's key is his own, not a replay of alice's"
    assert a.json()["orderId"] != b.json()["orderId"]
    assert again.status_code == 201 and again.json() == a.json()
    records = await read_topic(system.settings, system.topics.requests)
    owners = {decode(r.value).order_id: decode(r.value).data.account_id for r in records}  # type: ignore[attr-defined]
    assert owners == {a.json()["orderId"]: keys.names["alice"], b.json()["orderId"]: keys.names["bob"]}


async def test_browsers_authenticate_websockets_with_a_subprotocol_and_foreign_origins_are_refused(
    system: System, keys: Keys
) -> None:
    oid = system.orders["alice"][0]
    url = system.running.ws(f"/ws/orders/{oid}")
    async with websockets.connect(url, subprotocols=["oee.v1", f"bearer.{keys.alice}"]) as sock:  # type: ignore[list-item]
        assert sock.subprotocol == "oee.v1", "accepted with the plain protocol: the key is never echoed"
        assert (await collect(sock, 15)).seqs == [1, 2, 3, 4, 5]
    assert await _handshake_status(url, subprotocols=["oee.v1", "bearer.oee_nope"]) == 401  # type: ignore[list-item]
    own_origin = system.running.http
    for origin, status in (("https://evil.example", 403), ("http://127.0.0.1:1", 403), (own_origin, 101)):
        got = await _handshake_status(
            url, origin=origin, additional_headers={"Authorization": f"Bearer {keys.alice}"}
        )
        assert got == status, (origin, got)


async def test_bad_orders_under_keys_are_refused_with_their_status(system: System, keys: Keys) -> None:
    async with system.client(keys.alice) as alice:
        as_text = await alice.post(
            "/api/orders/execute", content=orjson.dumps(ORDER), headers={"Content-Type": "text/plain"}
        )
        assert as_text.status_code == 415
        big = await alice.post("/api/orders/execute", json={**ORDER, "pad": "x" * 20_000})
        assert big.status_code == 413
    assert await read_topic(system.settings, system.topics.requests) == []


class CountingPublisher:
    """Stands in for the broker: the limits are what is tested, not the log."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, event: Event) -> ingress.Position:
        self.events.append(event)
        return ingress.Position("orders.requests", 0, len(self.events) - 1)

    async def probe(self, timeout_s: float) -> bool:
        return True


@contextlib.asynccontextmanager
async def limited(infra: Settings, keys: Keys, **limits: Any) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    app = api_app(infra, publisher=CountingPublisher(), accounts=dataclasses.replace(KEYS, **limits))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        clients = {
            who: httpx.AsyncClient(
                transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {key}"}
            )
            for who, key in (("alice", keys.alice), ("bob", keys.bob))
        }
        try:
            yield clients
        finally:
            for c in clients.values():
                await c.aclose()


async def test_the_order_rate_is_limited_per_account_with_the_ietf_headers(
    infra: Settings, keys: Keys
) -> None:
    async with limited(infra, keys, order_rate=0.5, order_burst=3) as clients:
        alice, bob = clients["alice"], clients["bob"]
        answers = [await alice.post("/api/orders/execute", json=ORDER) for _ in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        assert answers[0].headers["ratelimit-policy"] == '"orders";q=3;w=6'
        assert answers[0].headers["ratelimit"].startswith('"orders";r=2;t=')
        refused = answers[-1]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit"].startswith('"orders";r=0;t=')
        assert refused.json()["details"][0]["field"] == "orderRate"
        assert "ACCOUNT_ORDER_RATE" in refused.json()["error"]
        assert (await bob.post("/api/orders/execute", json=ORDER)).status_code == 201, (
            "bob has his own bucket"
        )


async def test_open_orders_are_limited_per_account(infra: Settings, keys: Keys) -> None:
    async with limited(infra, keys, max_open_orders=2) as clients:
        alice, bob = clients["alice"], clients["bob"]
        assert [(await alice.post("/api/orders/execute", json=ORDER)).status_code for _ in range(2)] == [
            201,
            201,
        ]
        refused = await alice.post("/api/orders/execute", json=ORDER)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["details"][0]["field"] == "openOrders"
        assert "at most 2" in refused.json()["error"] and "ACCOUNT_MAX_OPEN_ORDERS" in refused.json()["error"]
        assert (await bob.post("/api/orders/execute", json=ORDER)).status_code == 201
