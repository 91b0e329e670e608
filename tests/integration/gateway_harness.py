"""Helpers for the gateway's integration tests: a gateway served by uvicorn inside the test's event loop,
a WebSocket client that collects one stream, events appended to the log and rows written the way the
projector writes them (into a schema of the test's own, so no projector is needed or disturbed)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import msgspec
import orjson
import uvicorn
import websockets
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from events.codec import encode, headers_for, key_for
from events.envelope import Event
from events.topics import Topics
from events.types import STATUS
from projections import migrations
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway.app import create_app
from services.gateway.gateway import Gateway
from services.gateway.options import GatewayOptions
from services.serving.limits import HttpLimits
from services.serving.server import uvicorn_config
from tests.uvicorn_harness import serve
from tests.waiting import until as wait_until  # noqa: F401  (the gateway tests import it from here)

TEST_OPTIONS = GatewayOptions(
    not_found_timeout_s=30.0, log_scan_delay_s=0.1, heartbeat_s=15.0, close_timeout_s=10.0
)


@dataclasses.dataclass
class RunningGateway:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    gateway: Gateway

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)


Wrap = Callable[[Any], Any]  # an ASGI app around the gateway's (tests set the scope's account with one)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings,
    options: GatewayOptions = TEST_OPTIONS,
    wrap: Wrap | None = None,
    accounts: AccountsOptions | None = None,
    limits: HttpLimits | None = None,
) -> AsyncIterator[RunningGateway]:
    """The standalone gateway app under a real uvicorn configured as `oee gateway` configures it (with the
    default HTTP limits unless `limits` are given)."""
    running = await start(settings, options, wrap, accounts, limits)
    try:
        yield running
    finally:
        if not running.task.done():
            await running.stop()


async def start(
    settings: Settings,
    options: GatewayOptions = TEST_OPTIONS,
    wrap: Wrap | None = None,
    accounts: AccountsOptions | None = None,
    limits: HttpLimits | None = None,
) -> RunningGateway:
    app = create_app(settings, options, accounts)

    def config(port: int) -> uvicorn.Config:
        return uvicorn_config(
            app if wrap is None else wrap(app),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            limits=limits or HttpLimits(),
            ws_max_size=options.max_message_bytes,
            timeout_graceful_shutdown=5,
        )

    served = await serve(config)
    server, task, port = served.server, served.task, served.port
    gateway: Gateway = app.state.gateway
    assert await gateway.wait_ready(), "the gateway's log tail did not position itself"
    return RunningGateway(server, task, port, gateway)


@dataclasses.dataclass
class Stream:
    frames: list[dict[str, Any]]
    code: int | None
    reason: str

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if "seq" in f]

    @property
    def statuses(self) -> list[str]:
        return [f["status"] for f in self.frames if "status" in f]


def connect(url: str) -> websockets.asyncio.client.connect:
    return websockets.connect(url, compression=None, open_timeout=30, close_timeout=5, max_size=2**20)


async def collect(ws: ClientConnection, timeout: float = 30.0, count: int | None = None) -> Stream:
    """Frames until the server closes (or `count` frames arrived)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            while count is None or len(frames) < count:
                frames.append(orjson.loads(await ws.recv()))
        except ConnectionClosed:
            pass
    return Stream(frames, ws.close_code, ws.close_reason or "")


async def read_stream(url: str, timeout: float = 30.0) -> Stream:
    async with connect(url) as ws:
        return await collect(ws, timeout)


async def append(bootstrap: str, topic: str, events: Iterable[Event]) -> list[RecordMetadata]:
    """Append events to the log as the router does (key = order id, type header), in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, encode(e), key=key_for(e), headers=headers_for(e)) for e in events
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def write_rows(
    dsn: str, topic: str, events: Iterable[Event], positions: Iterable[tuple[int, int]]
) -> None:
    """`order_events` rows as the projector writes them (payload = the event's data; 0001's columns)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO order_events (order_id, seq, event_id, type, status, payload, occurred_at, topic,"
            ' partition, "offset") VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)',
            [
                (
                    e.order_id,
                    e.seq,
                    e.event_id,
                    e.type,
                    STATUS[e.type],
                    msgspec.json.encode(e.data).decode(),  # type: ignore[attr-defined]
                    e.occurred_at,
                    topic,
                    partition,
                    offset,
                )
                for e, (partition, offset) in zip(events, positions, strict=True)
            ],
        )
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def own_schema(infra: Settings, topics: Topics, unique: str) -> AsyncIterator[Settings]:
    """Settings on the test's topics, with `order_events` in a fresh schema of the test's own (search_path
    in the URL): rows written here are the only ones the gateway sees, and nothing else sees them."""
    schema = f"gw{unique}"
    conn = await asyncpg.connect(infra.database_url)
    try:
        await migrations.apply(conn, schema)
    finally:
        await conn.close()
    sep = "&" if "?" in infra.database_url else "?"
    url = f"{infra.database_url}{sep}search_path={schema}"
    prefix = topics.events.removesuffix("orders.events")
    try:
        yield dataclasses.replace(infra, topic_prefix=prefix, database_url=url)
    finally:
        conn = await asyncpg.connect(infra.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def gather_limited(jobs: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Awaitable[Any]) -> Any:
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs))
