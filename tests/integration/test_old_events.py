"""A log written before accounts existed (OrderRequested schema_version 1, no account) projects and streams
as it did: the projector upcasts it to the implicit `local` account, and the read API and the gateway serve
it to that account exactly as they serve the same order written today."""

from __future__ import annotations

import json

import asyncpg
import httpx
import orjson
import pytest
import websockets
from aiokafka import AIOKafkaProducer

from events.codec import decode, encode, headers_for, key_for
from events.topics import Topics
from projections import migrations
from projections.fold import LogRecord
from services import query
from services.config import Settings
from services.gateway import app as gateway
from services.gateway.frames import event_frame
from services.gateway.options import GatewayOptions
from tests.api_harness import api_app, uvicorn_serving
from tests.integration.gateway_harness import collect, own_schema
from tests.projection_fixtures import log_end, reference_replay, running_projector, wait_caught_up
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


# Where a row sits in the log (the reference was folded from made-up offsets), not what it says.
_POSITION = {"last_partition", "last_offset", "partition", "offset"}


async def rows(conn: asyncpg.Connection, schema: str, table: str, key: str) -> list[dict[str, object]]:
    found = await conn.fetch(f'SELECT * FROM "{schema}".{table} ORDER BY {key}')
    return [{k: v for k, v in r.items() if k not in _POSITION} for r in found]


def as_v1(raw: bytes) -> bytes:
    """An OrderRequested as the code before accounts wrote it."""
    obj = json.loads(raw)
    obj["schema_version"] = 1
    del obj["data"]["account_id"]
    return json.dumps(obj, separators=(",", ":")).encode()


async def test_a_log_written_before_accounts_projects_and_streams_unchanged(
    infra: Settings, topics: Topics, unique: str
) -> None:
    events = lifecycle_events()
    async with own_schema(infra, topics, unique) as settings:
        schema = f"gw{unique}"
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for e in events:
                value, headers = encode(e), headers_for(e)
                if e.type == "OrderRequested":
                    value, headers = as_v1(value), [("type", b"OrderRequested"), ("schema_version", b"1")]
                    assert b"account_id" not in value
                await producer.send_and_wait(topics.events, value, key=key_for(e), headers=headers)
        finally:
            await producer.stop()
        ends = await log_end(settings.bootstrap_servers, topics.events)
        conn = await asyncpg.connect(infra.database_url)
        try:
            async with running_projector(settings, schema):
                await wait_caught_up(conn, schema, topics.events, ends)
            # The same order written today (v2, account `local`) folds into the very same rows.
            reference = f"ref{unique}"
            await migrations.apply(conn, reference)
            try:
                today = [LogRecord(0, i, encode(e)) for i, e in enumerate(events)]
                await reference_replay(conn, reference, topics.events, today, ends)
                for table, key in (("orders", "id"), ("order_events", "seq")):
                    assert await rows(conn, schema, table, key) == await rows(conn, reference, table, key)
                assert await conn.fetchval(f'SELECT account_id FROM "{schema}".orders') == "local"
            finally:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{reference}" CASCADE')
        finally:
            await conn.close()

        parts = [query.part(settings, schema=schema), gateway.part(settings, GatewayOptions())]
        app = api_app(settings, ingress_part=False, more=parts, schema=schema)
        async with uvicorn_serving(app) as running:
            assert await app.state.gateway.wait_ready()
            oid = events[0].order_id
            async with httpx.AsyncClient(base_url=running.http) as client:
                order = (await client.get(f"/api/orders/{oid}")).json()
                listed = (await client.get("/api/orders")).json()["orders"]
                served = (await client.get(f"/api/orders/{oid}/events")).json()["events"]
            assert order["status"] == "confirmed" and [o["orderId"] for o in listed] == [oid]
            # The events come back as the log has them today: upcast, account `local`.
            assert [
                decode(orjson.dumps({k: v for k, v in e.items() if k not in ("status", "position")}))
                for e in served
            ] == events
            async with websockets.connect(running.ws(f"/ws/orders/{oid}")) as sock:
                stream = await collect(sock, 15)
        assert stream.code == 1000
        assert stream.frames == [orjson.loads(orjson.dumps(event_frame(e))) for e in events]
