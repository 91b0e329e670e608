"""librdkafka must place a keyed record where aiokafka and the Java client do (murmur2 of the key): the
gateway looks an order's partition up with murmur2, the router's state topic is co-partitioned with the log,
and aiokafka producers remain in tools. librdkafka's own default (CRC32) would break all three quietly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from events.topics import TopicSpec
from services.config import Settings
from services.gateway.partitioning import partition_for
from services.rdkafka.config import producer_config
from services.rdkafka.producer import AsyncProducer
from services.stack.topics import ensure_topics

pytestmark = pytest.mark.integration

PARTITIONS = 12


@pytest.fixture
async def topic(infra: Settings, unique: str) -> AsyncIterator[str]:
    name = f"t{unique}.partitioner"
    await ensure_topics(infra.bootstrap_servers, [TopicSpec(name, PARTITIONS)])
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_keys_land_in_the_partition_aiokafka_and_java_choose(infra: Settings, topic: str) -> None:
    keys = [str(uuid.uuid4()).encode() for _ in range(2000)] + [b"", b"a", "é".encode(), b"\xff" * 33]
    producer = AsyncProducer(producer_config(infra.bootstrap_servers, "partitioner-test", **{"linger.ms": 5}))
    try:
        deliveries = [producer.produce(topic, b"v", key) for key in keys]
        landed = [(await d).partition() for d in deliveries]
    finally:
        await producer.close()
    every = list(range(PARTITIONS))
    aiokafka = DefaultPartitioner()
    expected = [aiokafka(key, every, every) for key in keys]
    assert landed == expected
    assert landed[:2000] == [partition_for(k.decode(), PARTITIONS) for k in keys[:2000]]
    assert len(set(landed)) == PARTITIONS  # the keys spread over every partition
