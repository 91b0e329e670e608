"""The broker under the tests is a real one: durable writes with an idempotent producer, transactions,
read_committed consumers, consumer groups."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from events.codec import decode, encode, headers_for, key_for
from events.topics import Topics
from services.config import Settings
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


async def _consume(settings: Settings, topic: str, expected: int, group: str | None = None) -> list[tuple]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend((r.key, r.value, dict(r.headers), r.partition, r.offset) for r in records)
        if group:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_every_event_type_comes_back_equal(infra: Settings, topics: Topics) -> None:
    events = lifecycle_events(failed=False) + lifecycle_events(failed=True)
    assert {type(e).__name__ for e in events} >= {
        "OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderConfirmed", "OrderFailed",
    }  # fmt: skip
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topics.events, encode(event), key=key_for(event), headers=headers_for(event)
            )
    finally:
        await producer.stop()

    got = await _consume(infra, topics.events, len(events))
    decoded = [decode(value) for _, value, _, _, _ in got]
    assert sorted(decoded, key=lambda e: (e.order_id, e.seq)) == sorted(
        events, key=lambda e: (e.order_id, e.seq)
    )
    for key, value, headers, _, _ in got:
        event = decode(value)
        assert key == event.order_id.encode()
        assert headers["type"] == event.type.encode()
    per_order_partitions = {(decode(v).order_id, p) for _, v, _, p, _ in got}
    assert len(per_order_partitions) == len({e.order_id for e in events}), (
        "one order's events share a partition"
    )


async def test_committed_transactions_are_visible_and_aborted_ones_are_not(
    infra: Settings, topics: Topics
) -> None:
    committed, aborted = lifecycle_events(), lifecycle_events()
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, transactional_id=f"test-{topics.events}", acks="all"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for event in aborted:
            await producer.send(topics.events, encode(event), key=key_for(event))
        await producer.abort_transaction()
        await producer.begin_transaction()
        for event in committed:
            await producer.send(topics.events, encode(event), key=key_for(event))
        await producer.commit_transaction()
    finally:
        await producer.stop()

    got = [decode(v) for _, v, _, _, _ in await _consume(infra, topics.events, len(committed))]
    assert {e.event_id for e in got} == {e.event_id for e in committed}
    # A read_committed reader sees nothing of the aborted transaction, even after reading to the end.
    assert not {e.event_id for e in got} & {e.event_id for e in aborted}


async def test_a_consumer_group_resumes_from_its_committed_offset(
    infra: Settings, topics: Topics, unique: str
) -> None:
    first, second = lifecycle_events(), lifecycle_events()
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for event in first:
            await producer.send_and_wait(topics.requests, encode(event), key=key_for(event))
        got_first = await _consume(infra, topics.requests, len(first), group=f"g-{unique}")
        for event in second:
            await producer.send_and_wait(topics.requests, encode(event), key=key_for(event))
    finally:
        await producer.stop()
    got_second = await _consume(infra, topics.requests, len(second), group=f"g-{unique}")
    assert {decode(v).event_id for _, v, _, _, _ in got_first} == {e.event_id for e in first}
    # The second consumer of the group starts at the first one's commit: it reads only the new records.
    assert {decode(v).event_id for _, v, _, _, _ in got_second} == {e.event_id for e in second}
