"""`/ws/orders/{orderId}` against the real broker and PostgreSQL: every moment of an order's life to connect
at, every history source (the tail's window, `order_events`, the log itself), resume, and the close codes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.topics import Topics
from services.config import Settings
from services.gateway.options import GatewayOptions
from services.gateway.partitioning import partition_for
from tests.integration.gateway_harness import (
    TEST_OPTIONS,
    append,
    collect,
    connect,
    own_schema,
    read_stream,
    serving,
    wait_until,
    write_rows,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration

STATUSES = ["pending", "routing", "building", "submitted", "confirmed"]


@pytest.fixture
async def settings(infra: Settings, topics: Topics, unique: str) -> AsyncIterator[Settings]:
    async with own_schema(infra, topics, unique) as live:
        yield live


def events_topic(settings: Settings) -> str:
    return Topics.with_prefix(settings.topic_prefix).events


async def test_connect_after_completion_gets_everything_then_a_clean_close(settings: Settings) -> None:
    events = lifecycle_events()
    async with serving(settings) as gw:
        await append(settings.bootstrap_servers, events_topic(settings), events)
        await wait_until(lambda: gw.gateway.tail.events_read >= 5, 30, "the tail to read the order")
        stream = await read_stream(gw.url(f"/ws/orders/{events[0].order_id}"))
    assert stream.seqs == [1, 2, 3, 4, 5]
    assert stream.statuses == STATUSES
    assert {f["orderId"] for f in stream.frames} == {events[0].order_id}
    assert stream.code == 1000 and stream.reason == "order confirmed at seq 5: stream complete"
    confirmed = stream.frames[-1]
    assert confirmed["data"]["txHash"] == events[-1].data.tx_hash  # type: ignore[attr-defined]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert confirmed["ts"] == (events[-1].occurred_at - epoch) // timedelta(milliseconds=1)


async def test_connect_before_the_order_exists(settings: Settings) -> None:
    events = lifecycle_events(failed=True)
    async with serving(settings) as gw, connect(gw.url(f"/ws/orders/{events[0].order_id}")) as ws:
        await wait_until(lambda: len(gw.gateway.hub) == 1, 10, "the subscription")
        await append(settings.bootstrap_servers, events_topic(settings), events)
        stream = await collect(ws)
    assert stream.seqs == [1, 2, 3, 4, 5]
    assert stream.statuses[-1] == "failed" and stream.frames[-1]["data"]["error"] == "slippage exceeded"
    assert stream.code == 1000 and "order failed at seq 5" in stream.reason


async def _delivered(port: int) -> tuple[float, float]:
    """The standalone gateway's own `/metrics`: (live frames counted, delivery lags observed)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name in ("oee_gateway_frames_sent_total", "oee_gateway_delivery_lag_seconds_count")
    }
    return found.get("oee_gateway_frames_sent_total", 0.0), found["oee_gateway_delivery_lag_seconds_count"]


async def test_the_standalone_gateway_serves_the_delivery_lag_of_live_frames_only(settings: Settings) -> None:
    live, history = lifecycle_events(), lifecycle_events()
    topic = events_topic(settings)
    async with serving(settings) as gw:
        before = await _delivered(gw.port)
        # History: an order complete before anyone watches it; none of its frames is a delivery.
        await append(settings.bootstrap_servers, topic, history)
        await wait_until(lambda: gw.gateway.tail.events_read >= 5, 30, "the tail to read the first order")
        assert (await read_stream(gw.url(f"/ws/orders/{history[0].order_id}"))).seqs == [1, 2, 3, 4, 5]
        assert await _delivered(gw.port) == before
        # Live: every frame of an order watched from before its first event is a delivery, counted once.
        async with connect(gw.url(f"/ws/orders/{live[0].order_id}")) as ws:
            await wait_until(lambda: len(gw.gateway.hub) == 1, 10, "the subscription")
            await append(settings.bootstrap_servers, topic, live)
            assert (await collect(ws)).seqs == [1, 2, 3, 4, 5]
        frames, lags = await _delivered(gw.port)
    assert (frames - before[0], lags - before[1]) == (5, 5)


async def test_join_mid_stream(settings: Settings) -> None:
    events = lifecycle_events()
    topic = events_topic(settings)
    async with serving(settings) as gw:
        await append(settings.bootstrap_servers, topic, events[:3])
        await wait_until(lambda: gw.gateway.tail.events_read >= 3, 30, "the first three events")
        async with connect(gw.url(f"/ws/orders/{events[0].order_id}")) as ws:
            first = await collect(ws, count=3)
            assert first.seqs == [1, 2, 3]
            await append(settings.bootstrap_servers, topic, events[3:])
            rest = await collect(ws)
    assert rest.seqs == [4, 5] and rest.code == 1000


async def test_resume_with_from_seq(settings: Settings) -> None:
    events = lifecycle_events()
    oid = events[0].order_id
    async with serving(settings) as gw:
        await append(settings.bootstrap_servers, events_topic(settings), events)
        await wait_until(lambda: gw.gateway.tail.events_read >= 5, 30, "the order")
        resumed = await read_stream(gw.url(f"/ws/orders/{oid}?fromSeq=3"))
        after_end = await read_stream(gw.url(f"/ws/orders/{oid}?fromSeq=5"))
    assert resumed.seqs == [4, 5] and resumed.code == 1000
    assert after_end.seqs == [] and after_end.code == 1000  # nothing left, and it says it is complete


async def test_keep_open_stays_after_the_terminal_event(settings: Settings) -> None:
    events = lifecycle_events()
    async with serving(settings) as gw:
        await append(settings.bootstrap_servers, events_topic(settings), events)
        await wait_until(lambda: gw.gateway.tail.events_read >= 5, 30, "the order")
        async with connect(gw.url(f"/ws/orders/{events[0].order_id}?keepOpen=1")) as ws:
            stream = await collect(ws, count=5)
            await ws.send('{"action":"ping","id":1}')  # still open: it answers
            pong = await collect(ws, count=1)
    assert stream.seqs == [1, 2, 3, 4, 5]
    assert pong.frames[0]["type"] == "pong" and pong.frames[0]["id"] == 1


async def test_history_from_the_projection_alone(settings: Settings) -> None:
    # The order finished before this gateway started and the log is not searched: order_events has it all.
    events = lifecycle_events()
    oid = events[0].order_id
    topic = events_topic(settings)
    partition = partition_for(oid, 3)
    await write_rows(settings.database_url, topic, events, [(partition, 10 + i) for i in range(5)])
    async with serving(settings) as gw:
        stream = await read_stream(gw.url(f"/ws/orders/{oid}"))
        assert gw.gateway.search.searches == 0
    assert stream.seqs == [1, 2, 3, 4, 5] and stream.code == 1000


async def test_no_projector_history_comes_from_the_log(settings: Settings) -> None:
    # The whole order was appended before the gateway started (so not in its window), and no projector ran.
    done = lifecycle_events()
    half = lifecycle_events()
    topic = events_topic(settings)
    await append(settings.bootstrap_servers, topic, done + half[:3])
    async with serving(settings) as gw:
        stream = await read_stream(gw.url(f"/ws/orders/{done[0].order_id}"))
        assert stream.seqs == [1, 2, 3, 4, 5] and stream.code == 1000
        async with connect(gw.url(f"/ws/orders/{half[0].order_id}")) as ws:
            first = await collect(ws, count=3)
            await append(settings.bootstrap_servers, topic, half[3:])
            rest = await collect(ws)
        assert gw.gateway.search.searches >= 1
    assert first.seqs + rest.seqs == [1, 2, 3, 4, 5] and rest.code == 1000


async def test_a_lagging_projection_is_completed_from_the_log(settings: Settings) -> None:
    # The log has seq 1-4 (before the gateway started); the projection only reached seq 2; seq 5 comes live.
    events = lifecycle_events()
    topic = events_topic(settings)
    meta = await append(settings.bootstrap_servers, topic, events[:4])
    await write_rows(settings.database_url, topic, events[:2], [(m.partition, m.offset) for m in meta[:2]])
    async with serving(settings) as gw, connect(gw.url(f"/ws/orders/{events[0].order_id}")) as ws:
        first = await collect(ws, count=4)
        await append(settings.bootstrap_servers, topic, events[4:])
        rest = await collect(ws)
    assert first.seqs == [1, 2, 3, 4] and rest.seqs == [5]


async def test_live_events_while_history_is_read_are_neither_lost_nor_doubled(
    settings: Settings,
) -> None:
    # Hold the history query on a table lock while the order's remaining events arrive live.
    events = lifecycle_events()
    topic = events_topic(settings)
    meta = await append(settings.bootstrap_servers, topic, events[:2])
    await write_rows(settings.database_url, topic, events[:2], [(m.partition, m.offset) for m in meta])
    options = dataclasses.replace(TEST_OPTIONS, db_timeout_s=60.0)
    locker = await asyncpg.connect(settings.database_url)
    try:
        async with serving(settings, options) as gw:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE order_events IN ACCESS EXCLUSIVE MODE")
            async with connect(gw.url(f"/ws/orders/{events[0].order_id}")) as ws:
                await wait_until(lambda: gw.gateway.pg.queries == 1, 10, "the history query to start")
                await append(settings.bootstrap_servers, topic, events[2:])
                await wait_until(lambda: gw.gateway.tail.events_read >= 3, 30, "the live events")
                await tx.rollback()  # the history query now answers seq 1-2
                stream = await collect(ws)
    finally:
        await locker.close()
    assert stream.seqs == [1, 2, 3, 4, 5] and stream.code == 1000


async def test_an_order_never_seen_is_closed_after_the_timeout(settings: Settings, unique: str) -> None:
    options = dataclasses.replace(TEST_OPTIONS, not_found_timeout_s=1.0)
    oid = lifecycle_events()[0].order_id  # a valid id that nothing ever appends
    async with serving(settings, options) as gw:
        started = asyncio.get_running_loop().time()
        stream = await read_stream(gw.url(f"/ws/orders/{oid}"))
        waited = asyncio.get_running_loop().time() - started
        assert gw.gateway.stats["not_found"] == 1
    assert stream.frames == []
    assert stream.code == 4404 and stream.reason == "order not found: no event within 1 s"
    assert waited >= 1.0


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/ws/orders/not-an-order", "invalid order id"),
        ("/ws/orders/0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b?fromSeq=-1", "fromSeq"),
    ],
)
async def test_invalid_requests_are_closed_4400(settings: Settings, path: str, says: str) -> None:
    async with serving(settings) as gw:
        stream = await read_stream(gw.url(path))
    assert stream.frames == [] and stream.code == 4400 and says in stream.reason


async def test_restart_then_resume_with_from_seq(settings: Settings) -> None:
    # A restarted gateway starts its window empty at the log's end: the resume's history is the log's.
    events = lifecycle_events()
    oid = events[0].order_id
    topic = events_topic(settings)
    async with serving(settings) as gw, connect(gw.url(f"/ws/orders/{oid}")) as ws:
        await append(settings.bootstrap_servers, topic, events[:3])
        got = await collect(ws, count=2)
    assert got.seqs == [1, 2]
    await append(settings.bootstrap_servers, topic, events[3:4])  # while no gateway runs
    async with serving(settings) as gw, connect(gw.url(f"/ws/orders/{oid}?fromSeq=2")) as ws:
        resumed = await collect(ws, count=2)
        await append(settings.bootstrap_servers, topic, events[4:])
        rest = await collect(ws)
    assert resumed.seqs == [3, 4] and rest.seqs == [5] and rest.code == 1000


async def test_gateway_options_reach_the_gateway(settings: Settings) -> None:
    options = GatewayOptions(send_queue=7, not_found_timeout_s=3.0)
    async with serving(settings, options) as gw:
        assert gw.gateway.options.send_queue == 7
        assert gw.gateway.snapshot()["ready"] is True
