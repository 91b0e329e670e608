"""The projector in this process against the real broker and Postgres, each test on its own topics and schema.

The yardstick is always the same: the projected tables equal a pure fold of the whole log written once
(`reference_replay`), compared as Postgres prints the rows.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from msgspec.structs import replace

from events.topics import Topics
from projections.projector import group_id
from services.config import Settings
from tests.projection_fixtures import (
    dump_all,
    log_end,
    produce,
    read_log,
    reference_replay,
    running_projector,
    settings_for,
    wait_caught_up,
    wait_until,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


async def _expected(
    conn: asyncpg.Connection, infra: Settings, topic: str, unique: str
) -> dict[str, list[str]]:
    """The tables a pure fold of the log gives, dumped (in a scratch schema dropped again)."""
    from projections import migrations

    scratch = f"r_{unique}_{uuid.uuid4().hex[:6]}"
    await migrations.apply(conn, scratch)
    try:
        records = await read_log(infra.bootstrap_servers, topic)
        await reference_replay(conn, scratch, topic, records, await log_end(infra.bootstrap_servers, topic))
        return await dump_all(conn, scratch)
    finally:
        await conn.execute(f'DROP SCHEMA "{scratch}" CASCADE')


async def test_orders_are_projected_as_a_pure_fold_of_the_log(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    orders = [lifecycle_events(failed=i % 4 == 0) for i in range(30)]
    # Interleave the orders' events as a router would write them.
    events = [e for step in zip(*orders, strict=True) for e in step]
    await produce(infra.bootstrap_servers, topics.events, events)
    ends = await log_end(infra.bootstrap_servers, topics.events)
    async with running_projector(settings_for(infra, topics), schema) as projector:
        await wait_caught_up(db, schema, topics.events, ends)
    assert projector.stats.applied == 150 and projector.stats.dead == 0
    got = await dump_all(db, schema)
    assert got == await _expected(db, infra, topics.events, unique)
    statuses = await db.fetch(f'SELECT status, count(*) AS n FROM "{schema}".orders GROUP BY status')
    assert {r["status"]: r["n"] for r in statuses} == {"confirmed": 22, "failed": 8}
    assert len(got["order_events"]) == 150


async def test_duplicates_in_the_log_and_redelivery_apply_once(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    events = lifecycle_events()
    other = lifecycle_events()
    # An at-least-once writer repeated events 2 and 3; a copy of seq 1 arrives after the terminal event.
    await produce(
        infra.bootstrap_servers, topics.events, [*events[:3], *events[1:3], *events[3:], events[0], *other]
    )
    ends = await log_end(infra.bootstrap_servers, topics.events)
    settings = settings_for(infra, topics)
    async with running_projector(settings, schema) as projector:
        await wait_caught_up(db, schema, topics.events, ends)
    assert projector.stats.duplicates == 3 and projector.stats.dead == 0
    first = await dump_all(db, schema)
    assert first == await _expected(db, infra, topics.events, unique)

    # Redelivery: the group's Kafka offsets are wound back to 0; the positions stored in Postgres win.
    await _rewind_group(infra.bootstrap_servers, group_id(settings), topics.events)
    async with running_projector(settings, schema) as again:
        await produce(infra.bootstrap_servers, topics.events, new := lifecycle_events()[:1])
        ends = await log_end(infra.bootstrap_servers, topics.events)
        await wait_caught_up(db, schema, topics.events, ends)
    assert (again.stats.applied, again.stats.duplicates) == (1, 0)
    after = await dump_all(db, schema)
    assert after == await _expected(db, infra, topics.events, unique)
    assert len(after["order_events"]) == len(first["order_events"]) + 1
    assert any(new[0].order_id in row for row in after["orders"])


async def _rewind_group(bootstrap: str, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (0, 1, 2)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
        assert [await consumer.committed(tp) for tp in tps] == [0, 0, 0]
    finally:
        await consumer.stop()


async def test_poison_records_become_dead_letters_and_the_rest_projects(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    good, gappy = lifecycle_events(), lifecycle_events()
    key = gappy[0].order_id.encode()
    items = [
        gappy[0],
        (key, b"\x00\xffgarbage"),  # not JSON at all
        (key, b'{"type": "OrderExploded", "seq": 1}'),  # an unknown type
        gappy[2],  # seq 3 after seq 1: a gap
        (key, b"{}"),
        *good,
    ]
    await produce(infra.bootstrap_servers, topics.events, items)
    ends = await log_end(infra.bootstrap_servers, topics.events)
    async with running_projector(settings_for(infra, topics), schema) as projector:
        await wait_caught_up(db, schema, topics.events, ends)
    assert projector.stats.dead == 4
    dead = await db.fetch(
        f'SELECT reason, raw FROM "{schema}".projector_dead_letters ORDER BY partition, "offset"'
    )
    reasons = sorted(r["reason"].split(":")[0] for r in dead)
    assert reasons == ["InvalidEvent", "InvalidEvent", "SequenceGap", "UnknownEventType"]
    assert b"\x00\xffgarbage" in [r["raw"] for r in dead]
    rows = {str(r["id"]): r for r in await db.fetch(f'SELECT id, status, last_seq FROM "{schema}".orders')}
    assert rows[good[0].order_id]["status"] == "confirmed"
    assert rows[gappy[0].order_id]["last_seq"] == 1
    assert await dump_all(db, schema) == await _expected(db, infra, topics.events, unique)


async def test_a_value_postgres_refuses_is_dead_lettered_alone(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    # Valid for the contract, but Postgres text cannot hold NUL: only that event may be lost to the batch.
    events = lifecycle_events()
    nul = replace(events[4], data=replace(events[4].data, tx_hash="5Kx\x00evil"))
    others = [lifecycle_events() for _ in range(5)]
    await produce(infra.bootstrap_servers, topics.events, [*events[:4], nul, *[e for o in others for e in o]])
    ends = await log_end(infra.bootstrap_servers, topics.events)
    async with running_projector(settings_for(infra, topics), schema) as projector:
        await wait_caught_up(db, schema, topics.events, ends)
    assert projector.stats.dead == 1
    reason = await db.fetchval(f'SELECT reason FROM "{schema}".projector_dead_letters')
    assert reason.startswith("refused by Postgres")
    status = await db.fetchval(f'SELECT status FROM "{schema}".orders WHERE id = $1', events[0].order_id)
    assert status == "submitted"
    count = await db.fetchval(f'SELECT count(*) FROM "{schema}".orders WHERE status = $1', "confirmed")
    assert count == 5


async def test_a_lost_database_connection_is_retried_without_skipping(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    settings = settings_for(infra, topics)
    async with running_projector(settings, schema, batch_max=50) as projector:
        for _ in range(4):
            await produce(
                infra.bootstrap_servers, topics.events, [e for _ in range(40) for e in lifecycle_events()]
            )
            # Cut the projector's connection while it works through the batch.
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                f"oee-projector:{schema}",
            )
        ends = await log_end(infra.bootstrap_servers, topics.events)
        await wait_caught_up(db, schema, topics.events, ends, timeout=120)
    assert projector.db.reconnects >= 1
    assert projector.stats.applied == 4 * 40 * 5
    assert await dump_all(db, schema) == await _expected(db, infra, topics.events, unique)


async def test_two_projectors_in_one_group_share_the_partitions(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, unique: str
) -> None:
    settings = settings_for(infra, topics)
    async with running_projector(settings, schema) as a, running_projector(settings, schema) as b:
        await produce(
            infra.bootstrap_servers, topics.events, [e for _ in range(60) for e in lifecycle_events()]
        )
        ends = await log_end(infra.bootstrap_servers, topics.events)
        await wait_caught_up(db, schema, topics.events, ends, timeout=120)
    assert a.stats.applied + b.stats.applied == 300
    assert await dump_all(db, schema) == await _expected(db, infra, topics.events, unique)


async def test_lag_and_freshness_are_recorded_per_partition(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    async with running_projector(settings_for(infra, topics), schema):
        await produce(infra.bootstrap_servers, topics.events, lifecycle_events())
        ends = await log_end(infra.bootstrap_servers, topics.events)
        await wait_caught_up(db, schema, topics.events, ends)
        rows = await db.fetch(f'SELECT * FROM "{schema}".projector_positions')

        async def heartbeat_seen() -> bool:
            later = await db.fetch(f'SELECT * FROM "{schema}".projector_positions')
            return all(r["end_offset"] is not None for r in later) and max(
                r["checked_at"] for r in later
            ) > max(r["checked_at"] for r in rows)

        await wait_until(heartbeat_seen, 30, "an idle heartbeat")
    assert {r["partition"] for r in rows} == {0, 1, 2}, "every partition has a position, even an empty one"
    assert all(r["projection"] == "orders" for r in rows)
