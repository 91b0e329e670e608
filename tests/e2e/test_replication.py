"""A replicated log on three local brokers (`OEE_KAFKA_BROKERS=3 oee up`): orders keep flowing while the
leader of a partition in use is SIGKILLed, every order that got a 201 ends with exactly one terminal event
in the log and in the projection, and the killed broker, restarted by the supervisor, rejoins every ISR.
One bounded test (~1.5-2 min on a shared 2-core machine): three JVMs are the expensive part."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import websockets
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.topics import Topics, topic_specs
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.e2e.stackrun import StackRun

pytestmark = pytest.mark.e2e

ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}
CLIENTS = 4
KEY = f"replication-{time.time_ns()}"
BEFORE_S = 5.0  # orders flowing before the kill
AFTER_S = 20.0  # and after it: the election and the clients' recovery happen in here


@pytest.fixture
def run(tmp_path: Path) -> Iterator[StackRun]:
    # Everything of its own, PostgreSQL included: the projector's positions are per topic name, and a fresh
    # cluster's topic names would meet positions another cluster left in a shared database.
    stack = StackRun.create(tmp_path, brokers=3)
    yield stack
    stack.down()


async def post_continuously(
    api: str, stop: asyncio.Event, accepted: list[str], outcomes: Counter[str]
) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=15) as client:
        while not stop.is_set():
            try:
                answer = await client.post("/api/orders/execute", json=ORDER)
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                continue
            outcomes[str(answer.status_code)] += 1
            if answer.status_code == 201:
                accepted.append(answer.json()["orderId"])
            await asyncio.sleep(0.05)  # a client's think time, ~15 orders/s each when the API answers at once


async def watch_one_order(api: str) -> list[dict]:  # type: ignore[type-arg]
    """Post one order (retrying 503s with its Idempotency-Key, as a client should) and follow it over the
    API's WebSocket from right after its 201: its later frames come from the gateway's live tail of the log."""
    async with httpx.AsyncClient(base_url=api, timeout=15) as client:
        for _ in range(60):
            answer = await client.post("/api/orders/execute", json=ORDER, headers={"Idempotency-Key": KEY})
            if answer.status_code == 201:
                break
            assert answer.status_code == 503, answer.text
            await asyncio.sleep(0.5)
        assert answer.status_code == 201, answer.text
    url = api.replace("http://", "ws://") + f"/ws/orders/{answer.json()['orderId']}"
    frames = []
    async with asyncio.timeout(90), websockets.connect(url, open_timeout=30) as socket:
        async for message in socket:  # the gateway closes after the terminal frame
            frames.append(orjson.loads(message))
    return frames


async def describe(bootstrap: str, names: list[str]) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: d["partitions"] for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def topic_config(bootstrap: str, topic: str, key: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})]
        )
        return str(next(entry[1] for entry in response.resources[0][4] if entry[0] == key))
    finally:
        await admin.close()


async def wait_projected(url: str, ids: list[str], timeout: float, run: StackRun) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch("SELECT id::text, status FROM orders WHERE id = ANY($1::uuid[])", ids)
            final = {r["id"]: r["status"] for r in rows if r["status"] in ("confirmed", "failed")}
            if len(final) == len(ids):
                return final
            assert time.monotonic() < deadline, (
                f"{len(ids) - len(final)} orders not projected:\n{run.logs_tail()}"
            )
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_a_killed_partition_leader_loses_no_acknowledged_order_and_rejoins(run: StackRun) -> None:
    run.up()
    topics = Topics.with_prefix(run.settings.topic_prefix)
    ours = [s.name for s in topic_specs(topics, 3)]
    layout = await describe(run.bootstrap, [*ours, "__consumer_offsets", "__transaction_state"])
    assert {len(p["replicas"]) for parts in layout.values() for p in parts} == {3}, (
        "every partition has 3 copies"
    )
    assert await topic_config(run.bootstrap, topics.events, "min.insync.replicas") == "2"

    fresh = {"OEE_TOPIC_PREFIX": f"{run.settings.topic_prefix}single."}  # topics that do not exist yet
    refused = run.oee("topics", "create", "--replication-factor", "1", timeout=60, extra_env=fresh)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (
        "refusing to create topic" in refused.stderr and "1 replica on a 3-broker cluster" in refused.stderr
    )

    accepted: list[str] = []
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(post_continuously(run.api, stop, accepted, outcomes)) for _ in range(CLIENTS)
    ]
    try:
        await asyncio.sleep(BEFORE_S)  # the load's own duration, not a wait for something
        before = len(accepted)
        assert before > 0, f"no order accepted before the kill: {outcomes}\n{run.logs_tail()}"
        victim = await run.leader_of(topics.requests, 0)
        name = "kafka" if victim == 1 else f"kafka-{victim}"
        killed = run.broker_signal(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        watched = asyncio.create_task(watch_one_order(run.api))
        await asyncio.sleep(AFTER_S)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert len(accepted) - before > 0, f"nothing accepted after the kill: {outcomes}\n{run.logs_tail()}"
    frames = await watched
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1)), "the gateway streamed without a gap"
    assert frames[-1]["status"] in ("confirmed", "failed") and len(frames) >= 5, frames

    async with LogReader(run.bootstrap, topics.events) as log:
        await log.wait_terminal(accepted, 120)
        await log.settle(2.0)
    for order_id in accepted:
        assert_lifecycle(log.by_order[order_id])  # exactly one terminal event, seq gap-free
    final = await wait_projected(run.database_url, accepted, 60, run)
    expected = {
        o: {"OrderConfirmed": "confirmed", "OrderFailed": "failed"}[log.by_order[o][-1].type]
        for o in accepted
    }
    assert final == expected, "the projection agrees with the log"

    back = await run.await_component(
        name,
        lambda c: c["state"] == "running" and c["pid"] not in (None, killed) and c["restarts"] == 1,
        timeout=90,
        what="restarted by the supervisor",
    )
    deadline = time.monotonic() + 60
    while True:
        isr = await describe(run.bootstrap, ours)
        if all(victim in p["isr"] for parts in isr.values() for p in parts):
            break
        assert time.monotonic() < deadline, f"node {victim} not back in every ISR: {isr}"
        await asyncio.sleep(0.5)
    print(
        f"\nreplication: {len(accepted)} orders acknowledged ({before} before the kill), outcomes {dict(outcomes)}; "
        f"node {victim} (pid {killed}) back as pid {back['pid']} and in every ISR "
        f"{time.monotonic() - killed_at:.0f} s after the kill; router restarts {run.status()['router']['restarts']}"
    )
