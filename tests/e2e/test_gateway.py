"""The gateway as users run it: `oee gateway` beside `oee router` and `oee venue`, no projector. Clients
follow real orders over WebSockets while the gateway is SIGKILLed twice; each resumes with `fromSeq` and
ends with exactly the order's events in the log, in seq order, no gap, no duplicate (P12)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from events.topics import Topics
from services.config import Settings
from tests.e2e.harness import (
    LogReader,
    Proc,
    free_port,
    order_request,
    produce,
    service,
    stop_all,
    wait_http,
    wait_log,
)

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    topics: Topics
    router: Proc
    venue: Proc
    gateway: Proc
    gateway_port: int
    tmp: Path
    gateway_env: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: list[Proc] = dataclasses.field(default_factory=list)  # more processes a test started

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}{path}"

    def start_gateway(self) -> Proc:
        env = {"GATEWAY_PORT": str(self.gateway_port), "GATEWAY_LOG_SCAN_DELAY_MS": "200", **self.gateway_env}
        self.gateway = service("gateway", self.settings, self.tmp, env).start()
        return self.gateway

    async def gateway_ready(self) -> None:
        await wait_http(f"http://127.0.0.1:{self.gateway_port}/health", self.gateway)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while not (await client.get(f"http://127.0.0.1:{self.gateway_port}/gateway/stats")).json()[
                "ready"
            ]:
                assert time.monotonic() < deadline, f"gateway never ready:\n{self.gateway.tail()}"
                await asyncio.sleep(0.1)


Start = Callable[..., Awaitable[Pipeline]]


@pytest.fixture
async def pipeline(infra: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Pipeline] = []
    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))

    async def _start(
        exec_latency_ms: str = "500-1500", gateway_env: dict[str, str] | None = None
    ) -> Pipeline:
        venue_port = free_port()
        env = {
            "VENUE_PORT": str(venue_port),
            "VENUE_SEED": "11",
            "VENUE_EXEC_LATENCY_MS": exec_latency_ms,
            "ROUTER_METRICS_PORT": "0",  # no fixed port: other tests' routers may be running
        }
        venue = service("venue", settings, tmp_path, env).start()
        url = f"http://127.0.0.1:{venue_port}"
        router = service("router", settings, tmp_path, dict(env, VENUE_URL=url)).start()
        p = Pipeline(settings, topics, router, venue, None, free_port(), tmp_path, gateway_env or {})  # type: ignore[arg-type]
        p.start_gateway()
        started.append(p)
        await wait_http(f"{url}/health", venue)
        await wait_log(router, "partition assigned", count=3)
        await p.gateway_ready()
        return p

    yield _start
    stop_all(proc for p in started for proc in (*p.extra, p.gateway, p.router, p.venue))


@dataclasses.dataclass
class Followed:
    frames: list[dict[str, Any]]
    connections: int


async def follow(p: Pipeline, order_id: str, delay: float, deadline: float) -> Followed:
    """A client as a user writes one: connect, read, and on any drop reconnect with fromSeq = last seq."""
    await asyncio.sleep(delay)  # clients arrive at every moment of the order's life
    frames: list[dict[str, Any]] = []
    connections = 0
    while time.monotonic() < deadline:
        last = frames[-1]["seq"] if frames else 0
        try:
            async with websockets.connect(
                p.ws(f"/ws/orders/{order_id}?fromSeq={last}"), open_timeout=5
            ) as ws:
                connections += 1
                async for message in ws:
                    frame = orjson.loads(message)
                    assert frame["seq"] == last + 1, f"{order_id}: got seq {frame['seq']} after {last}"
                    frames.append(frame)
                    last = frame["seq"]
                if ws.close_code == 1000:
                    return Followed(frames, connections)
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            pass  # the gateway is down or restarting
        await asyncio.sleep(0.2)  # reconnect backoff
    raise AssertionError(f"{order_id}: incomplete after the deadline: {[f['seq'] for f in frames]}")


async def test_clients_resume_across_two_gateway_kills_and_match_the_log(pipeline: Start) -> None:
    p = await pipeline()
    rng = random.Random(3)
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 4) for i in range(60)]
    deadline = time.monotonic() + 150
    clients = [
        asyncio.create_task(follow(p, o.order_id, rng.uniform(0, 4), deadline))
        for o in orders
        for _ in range(2)
    ]
    await produce(p.settings.bootstrap_servers, p.topics.requests, orders[:30])
    async with LogReader(p.settings.bootstrap_servers, p.topics.events) as log:
        for _ in range(2):
            await log.wait_for(
                lambda r: sum(1 for evs in r.by_order.values() if evs[-1].type == "OrderSubmitted") >= 5,
                60,
                "orders in flight",
                [p.router],
            )
            p.gateway.kill(signal.SIGKILL)
            await produce(
                p.settings.bootstrap_servers, p.topics.requests, orders[30:45] if _ == 0 else orders[45:]
            )
            p.start_gateway()
            await p.gateway_ready()
        results = await asyncio.gather(*clients)
        await log.wait_terminal([o.order_id for o in orders], 60, [p.router])
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"http://127.0.0.1:{p.gateway_port}/gateway/stats")).json()
        print(
            f"clients: {len(results)}, connections: {sum(r.connections for r in results)}; gateway: {stats}"
        )
        assert sum(r.connections for r in results) > len(results), "no client was cut off by the kills"
        for order, result in zip([o for o in orders for _ in range(2)], results, strict=True):
            frames = result.frames
            events = log.by_order[order.order_id]
            assert [f["seq"] for f in frames] == [e.seq for e in events]
            assert [f["type"] for f in frames] == [e.type for e in events]
            assert frames[-1]["status"] in ("confirmed", "failed")


async def test_history_from_the_real_projector_after_a_gateway_restart(
    pipeline: Start, infra: Settings, unique: str
) -> None:
    """The contract with `oee projector`: the rows it writes are history the gateway reads as such."""
    schema = f"gw{unique}"
    sep = "&" if "?" in infra.database_url else "?"
    p = await pipeline("50", gateway_env={"DATABASE_URL": f"{infra.database_url}{sep}search_path={schema}"})
    projector_env = {"PROJECTION_SCHEMA": schema, "PROJECTOR_METRICS_PORT": "0"}
    p.extra.append(service("projector", p.settings, p.tmp, projector_env).start())
    orders = [order_request(amount=1 + i) for i in range(10)]
    try:
        await produce(p.settings.bootstrap_servers, p.topics.requests, orders)
        async with LogReader(p.settings.bootstrap_servers, p.topics.events) as log:
            await log.wait_terminal([o.order_id for o in orders], 60, [p.router])
        conn = await asyncpg.connect(infra.database_url)
        try:
            deadline = time.monotonic() + 60
            query = f'SELECT count(*) FROM "{schema}".order_events WHERE topic = $1'
            expected = sum(len(log.by_order[o.order_id]) for o in orders)
            while True:
                try:
                    if await conn.fetchval(query, p.topics.events) >= expected:
                        break
                except asyncpg.UndefinedTableError:
                    pass  # the projector creates its schema when it starts
                assert time.monotonic() < deadline, f"projector did not catch up:\n{p.extra[0].tail()}"
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        # A new gateway starts its window at the log's end: all of this history must come from the rows.
        p.gateway.kill(signal.SIGKILL)
        p.start_gateway()
        await p.gateway_ready()
        for order in orders:
            async with websockets.connect(p.ws(f"/ws/orders/{order.order_id}")) as ws:
                frames = [orjson.loads(m) async for m in ws]
                assert ws.close_code == 1000
            assert [f["seq"] for f in frames] == [e.seq for e in log.by_order[order.order_id]]
            assert frames[-1]["status"] == "confirmed" and frames[-1]["data"]["txHash"]
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"http://127.0.0.1:{p.gateway_port}/gateway/stats")).json()
        assert stats["historyQueries"] >= 1 and stats["logSearches"] == 0, stats
    finally:
        conn = await asyncpg.connect(infra.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
