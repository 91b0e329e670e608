"""`oee tail --order ID` as a person runs it on a finished order: its history, not silence."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode, key_for
from events.topics import Topics
from services.config import Settings
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


async def test_tail_of_one_order_shows_its_history_and_says_so(infra: Settings, topics: Topics) -> None:
    ours, other = lifecycle_events(), lifecycle_events()
    assert ours[0].order_id != other[0].order_id
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for event in [*ours, *other]:
            await producer.send_and_wait(topics.events, encode(event), key=key_for(event))
    finally:
        await producer.stop()

    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=infra.bootstrap_servers,
        OEE_TOPIC_PREFIX=topics.events.removesuffix("orders.events"),
    )
    order = str(ours[0].order_id)
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "services.cli", "tail", "--order", order, "--limit", str(len(ours))],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    result = subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[3] for line in lines] == [f"#{e.seq}" for e in ours]
    assert all(order in line for line in lines)
    assert result.stderr.strip() == (
        f"oee tail: order {order}'s events from the start of the log, until {len(ours)} event(s)"
    )
