"""A consumer fed a garbage record reports a typed decode error and keeps going."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode, key_for
from events.topics import Topics
from services.config import Settings
from services.tail import tail
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


async def test_tail_reports_garbage_and_keeps_reading(infra: Settings, topics: Topics) -> None:
    events = lifecycle_events()
    garbage = [b"\x00\xffnot json", b'{"type": "OrderExploded", "seq": 1}', b"[1, 2, 3]"]
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        key = key_for(events[0])
        await producer.send_and_wait(topics.events, encode(events[0]), key=key)
        for bad in garbage:  # same key: same partition, between good events
            await producer.send_and_wait(topics.events, bad, key=key)
        for event in events[1:]:
            await producer.send_and_wait(topics.events, encode(event), key=key)
    finally:
        await producer.stop()

    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))
    out = io.StringIO()
    printed = await asyncio.wait_for(
        tail(settings, from_beginning=True, limit=len(events) + len(garbage), out=out), timeout=60
    )
    lines = out.getvalue().splitlines()
    assert printed == len(events) + len(garbage)
    undecodable = [line for line in lines if "UNDECODABLE" in line]
    assert len(undecodable) == 3
    assert any("UnknownEventType" in line and "OrderExploded" in line for line in undecodable)
    good = [line for line in lines if "UNDECODABLE" not in line]
    assert [line.split()[3] for line in good] == [f"#{e.seq}" for e in events]
    assert events[-1].type in good[-1], "the events after the garbage were all read"
