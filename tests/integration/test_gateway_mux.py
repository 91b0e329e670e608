"""`/ws`: many orders on one connection - subscribe, unsubscribe, fromSeq, heartbeats, ping, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from events.topics import Topics
from services.config import Settings
from tests.integration.gateway_harness import TEST_OPTIONS, append, connect, own_schema, serving, wait_until
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(infra: Settings, topics: Topics, unique: str) -> AsyncIterator[Settings]:
    async with own_schema(infra, topics, unique) as live:
        yield live


def sub(order_id: str, from_seq: int | None = None) -> str:
    msg: dict[str, Any] = {"action": "subscribe", "orderId": order_id}
    if from_seq is not None:
        msg["fromSeq"] = from_seq
    return orjson.dumps(msg).decode()


async def frames_until(ws: Any, done: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Frames until `done(frames)` holds (heartbeats included)."""
    got: list[dict[str, Any]] = []
    while not done(got):
        got.append(orjson.loads(await ws.recv()))
        assert len(got) <= limit, got
    return got


def seqs(frames: list[dict[str, Any]], order_id: str) -> list[int]:
    return [f["seq"] for f in frames if f.get("orderId") == order_id and "seq" in f]


def ends(frames: list[dict[str, Any]]) -> set[str]:
    return {f["orderId"] for f in frames if f["type"] == "end"}


async def test_two_orders_on_one_connection_each_complete_and_in_order(settings: Settings) -> None:
    a, b = lifecycle_events(), lifecycle_events(failed=True)
    oa, ob = a[0].order_id, b[0].order_id
    topic = Topics.with_prefix(settings.topic_prefix).events
    async with serving(settings) as gw, connect(gw.url("/ws")) as ws:
        await append(settings.bootstrap_servers, topic, a[:2])  # a is under way, b does not exist yet
        await wait_until(lambda: gw.gateway.tail.events_read >= 2, 30, "a's first events")
        await ws.send(sub(oa))
        await ws.send(sub(ob))
        await append(
            settings.bootstrap_servers, topic, [x for pair in zip(a[2:], b, strict=False) for x in pair]
        )
        await append(settings.bootstrap_servers, topic, b[3:])
        frames = await frames_until(ws, lambda got: ends(got) == {oa, ob})
    acks = [f for f in frames if f["type"] == "subscribed"]
    assert [(f["orderId"], f["fromSeq"]) for f in acks] == [(oa, 0), (ob, 0)]
    assert seqs(frames, oa) == [1, 2, 3, 4, 5] and seqs(frames, ob) == [1, 2, 3, 4, 5]
    end_a = next(f for f in frames if f["type"] == "end" and f["orderId"] == oa)
    assert end_a["code"] == 1000 and "confirmed" in end_a["reason"]


async def test_from_seq_unsubscribe_ping_and_errors(settings: Settings) -> None:
    a, b = lifecycle_events(), lifecycle_events()
    oa, ob = a[0].order_id, b[0].order_id
    topic = Topics.with_prefix(settings.topic_prefix).events
    async with serving(settings) as gw, connect(gw.url("/ws")) as ws:
        await append(settings.bootstrap_servers, topic, a + b[:1])
        await wait_until(lambda: gw.gateway.tail.events_read >= 6, 30, "the events")
        await ws.send(sub(oa, from_seq=3))
        got = await frames_until(ws, lambda g: ends(g) == {oa})
        assert seqs(got, oa) == [4, 5]

        await ws.send(sub(ob))
        got = await frames_until(ws, lambda g: seqs(g, ob) == [1])
        await ws.send(orjson.dumps({"action": "unsubscribe", "orderId": ob}).decode())
        got = await frames_until(ws, lambda g: any(f["type"] == "unsubscribed" for f in g))
        await wait_until(lambda: len(gw.gateway.hub) == 0, 10, "the subscription to go")
        await append(settings.bootstrap_servers, topic, b[1:])
        await ws.send('{"action":"ping","id":"p1"}')
        got = await frames_until(ws, lambda g: any(f["type"] == "pong" for f in g))
        assert seqs(got, ob) == []  # nothing of b after unsubscribing
        assert got[-1]["id"] == "p1" and got[-1]["ts"] > 0

        for bad, says in [
            ("hello", "JSON"),
            ('{"action":"subscribe","orderId":"nope"}', "invalid order id"),
            ('{"action":"jump"}', "action must be"),
        ]:
            await ws.send(bad)
            [error] = await frames_until(ws, lambda g: len(g) == 1)
            assert error["type"] == "error" and error["code"] == 4400 and says in error["error"]


async def test_heartbeats_and_an_unknown_order_is_reported_not_closed(settings: Settings) -> None:
    options = dataclasses.replace(TEST_OPTIONS, heartbeat_s=0.2, not_found_timeout_s=0.5)
    ghost = lifecycle_events()[0].order_id  # never appended
    async with serving(settings, options) as gw, connect(gw.url("/ws")) as ws:
        await ws.send(sub(ghost))
        got = await frames_until(
            ws,
            lambda g: sum(f["type"] == "heartbeat" for f in g) >= 2 and any(f["type"] == "error" for f in g),
        )
        error = next(f for f in got if f["type"] == "error")
        assert error["orderId"] == ghost and error["code"] == 4404
        await ws.send('{"action":"ping"}')
        await frames_until(ws, lambda g: any(f["type"] == "pong" for f in g))  # the connection lives on
        assert gw.gateway.snapshot()["connections"] == 1


async def test_subscription_limit(settings: Settings) -> None:
    options = dataclasses.replace(TEST_OPTIONS, max_subscriptions=2)
    ids = [lifecycle_events()[0].order_id for _ in range(3)]
    async with serving(settings, options) as gw, connect(gw.url("/ws")) as ws:
        for oid in ids:
            await ws.send(sub(oid))
        got = await frames_until(ws, lambda g: len(g) == 3)
    assert [f["type"] for f in got] == ["subscribed", "subscribed", "error"]
    assert "at most 2 subscriptions" in got[2]["error"]
