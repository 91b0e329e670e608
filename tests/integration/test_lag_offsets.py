"""The lag monitor against the real broker and Postgres: its numbers agree with offsets the test computes
itself, transaction markers do not count as lag, and stopped or stalled readers are called so."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from events.codec import encode, headers_for, key_for
from events.topics import Topics
from services.config import Settings
from services.lag.config import LagOptions
from services.lag.model import GroupLag, LagReport
from services.lag.monitor import LagMonitor
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def prefix_of(topics: Topics) -> str:
    return topics.events.removesuffix("orders.events")


@pytest.fixture
async def monitor(infra: Settings, topics: Topics) -> AsyncIterator[Callable[..., Awaitable[LagMonitor]]]:
    made: list[tuple[LagMonitor, asyncpg.Pool | None]] = []

    async def make(pool: bool = False, schema: str = "public", **opts: object) -> LagMonitor:
        options = dataclasses.replace(LagOptions(), min_samples=3, err_offsets=0, err_seconds=0, **opts)
        db = await asyncpg.create_pool(infra.database_url, min_size=0, max_size=2) if pool else None
        settings = dataclasses.replace(infra, topic_prefix=prefix_of(topics))
        m = LagMonitor(settings, options, db, schema)
        made.append((m, db))
        return m

    yield make
    for m, db in made:
        await m.stop()
        if db is not None:
            await db.close()


async def produce_at(bootstrap: str, topic: str, per_partition: dict[int, int], base_ms: int) -> None:
    """`per_partition[p]` records into partition p; record i has timestamp base_ms + i seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, b"x", key=b"k", partition=p, timestamp_ms=base_ms + i * 1000)
            for p, n in per_partition.items()
            for i in range(n)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def group_of(report: LagReport, name: str) -> GroupLag:
    group = report.group(name)
    assert group is not None, f"{name} not in {[g.group for g in report.groups]} (errors {report.errors})"
    return group


async def sample_until(
    m: LagMonitor,
    done: Callable[[LagReport], bool],
    what: str,
    timeout: float = 30.0,
    before: Callable[[], Awaitable[None]] | None = None,
) -> LagReport:
    """Sample until `done(report)`; `before` runs ahead of each sample (to keep records arriving)."""
    deadline = time.monotonic() + timeout
    while True:
        if before is not None:
            await before()
        report = await m.sample()
        if done(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {report.to_json()}")
        await asyncio.sleep(0.1)


async def test_offset_and_time_lag_agree_with_the_offsets_the_test_computes(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]], unique: str
) -> None:
    produced = {0: 10, 1: 7, 2: 0}
    committed = {0: 4, 1: 7}  # partition 2: no commit at all, and nothing to read
    base_ms = int(time.time() * 1000) - HOUR_MS
    await produce_at(infra.bootstrap_servers, topics.requests, produced, base_ms)
    group = f"{prefix_of(topics)}lagtest-{unique}"
    await commit(
        infra.bootstrap_servers, group, {TopicPartition(topics.requests, p): o for p, o in committed.items()}
    )
    m = await monitor()
    report = await sample_until(m, lambda r: r.group(group) is not None, f"group {group}")
    rows = {p.partition: p for p in group_of(report, group).partitions}
    assert set(rows) == {0, 1, 2}
    for p, n in produced.items():
        row = rows[p]
        assert (row.topic, row.end, row.committed) == (topics.requests, n, committed.get(p))
        assert row.lag == n - committed.get(p, 0), p
    # The oldest unread record of partition 0 is record 4, written with timestamp base + 4 s.
    assert rows[0].time_lag_s == pytest.approx(report.sampled_at - (base_ms + 4_000) / 1000, abs=0.01)
    assert rows[1].time_lag_s == 0.0 and rows[2].time_lag_s == 0.0
    assert group_of(report, group).lag == 6
    intake = next(t for t in report.topics if t.topic == topics.requests)
    assert (intake.partitions, intake.end, intake.unstable) == (3, 17, 0)


async def test_transaction_markers_left_unread_are_no_lag(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]], unique: str
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, transactional_id=f"lagtest-{unique}"
    )
    await producer.start()
    try:
        for _ in range(2):
            async with producer.transaction():
                sent = [await producer.send(topics.events, b"x", key=b"k", partition=0) for _ in range(3)]
        last = (await sent[-1]).offset
    finally:
        await producer.stop()
    tp = TopicPartition(topics.events, 0)
    group = f"{prefix_of(topics)}lagtest-{unique}"
    # A reader that consumed every record but stored "last record + 1" (before the final commit marker).
    await commit(infra.bootstrap_servers, group, {tp: last + 1})
    m = await monitor()
    report = await sample_until(m, lambda r: r.group(group) is not None, f"group {group}")
    row = next(p for p in group_of(report, group).partitions if p.partition == 0)
    assert row.end == last + 2, "the commit marker takes an offset"
    assert (row.committed, row.lag, row.time_lag_s, row.status) == (last + 1, 0, 0.0, "OK")


async def test_a_group_that_stops_shows_stopped_with_growing_lag(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]], unique: str
) -> None:
    tp = TopicPartition(topics.requests, 0)
    await produce_at(infra.bootstrap_servers, topics.requests, {0: 5}, int(time.time() * 1000))
    group = f"{prefix_of(topics)}stopped-{unique}"
    await commit(infra.bootstrap_servers, group, {tp: 5})  # caught up, then gone: no members
    m = await monitor()
    first = group_of(await sample_until(m, lambda r: r.group(group) is not None, group), group)
    assert (first.lag, first.status) == (0, "OK")

    async def more() -> None:
        await produce_at(infra.bootstrap_servers, topics.requests, {0: 3}, int(time.time() * 1000))

    lags = []

    def stopped(report: LagReport) -> bool:
        g = group_of(report, group)
        lags.append(g.lag)
        return g.status == "STOPPED" and len(lags) >= 3

    report = await sample_until(m, stopped, "STOPPED", before=more)
    assert lags == sorted(lags) and lags[-1] > lags[0] > 0, lags
    assert group_of(report, group).members == 0
    assert "no members" in group_of(report, group).reason


async def test_a_member_that_does_not_commit_stalls(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]], unique: str
) -> None:
    group = f"{prefix_of(topics)}stall-{unique}"
    await produce_at(infra.bootstrap_servers, topics.requests, {0: 2}, int(time.time() * 1000))
    consumer = AIOKafkaConsumer(
        topics.requests,
        bootstrap_servers=infra.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=30_000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=5000)  # joined, assigned
        tps = consumer.assignment()
        await consumer.commit(
            {tp: 1 for tp in tps if tp.partition == 0} | {tp: 0 for tp in tps if tp.partition}
        )
        m = await monitor(window_s=60.0)

        async def more() -> None:
            await produce_at(infra.bootstrap_servers, topics.requests, {0: 2}, int(time.time() * 1000))

        def stalled(report: LagReport) -> bool:
            g = report.group(group)
            return g is not None and g.status == "STALL"

        report = await sample_until(m, stalled, "STALL", before=more)
        g = group_of(report, group)
        assert g.members == 1
        p0 = next(p for p in g.partitions if p.partition == 0)
        assert p0.committed == 1 and p0.lag >= 1 + 3 * 2 and p0.status == "STALL"
    finally:
        await consumer.stop()


async def test_projector_positions_in_postgres_are_a_reader_of_their_own(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]], unique: str
) -> None:
    from projections import migrations

    schema = f"lag_{unique}"
    pool = await asyncpg.create_pool(infra.database_url, min_size=0, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrations.apply(conn, schema)
        base_ms = int(time.time() * 1000) - HOUR_MS
        await produce_at(infra.bootstrap_servers, topics.events, {0: 6, 1: 2}, base_ms)
        async with pool.acquire() as conn:
            await conn.execute(
                f"INSERT INTO {schema}.projector_positions (projection, topic, partition, next_offset, checked_at)"
                " VALUES ('orders', $1, 0, 2, now()), ('orders', $1, 1, 2, now())",
                topics.events,
            )
        m = await monitor(pool=True, schema=schema)
        report = await sample_until(m, lambda r: r.group("projection:orders") is not None, "projection")
        g = group_of(report, "projection:orders")
        rows = {p.partition: p for p in g.partitions}
        assert (g.kind, g.members, g.state) == ("projection", 1, "alive")
        assert (rows[0].committed, rows[0].lag, rows[1].lag, rows[2].committed, rows[2].lag) == (
            2,
            4,
            0,
            None,
            0,
        )
        assert rows[0].time_lag_s == pytest.approx(report.sampled_at - (base_ms + 2_000) / 1000, abs=0.01)
        stage = next(s for s in report.stages if s.stage == "log_to_projector")
        assert stage.current_s == pytest.approx(rows[0].time_lag_s)
        # A projector that stopped checking in has no "members": STOPPED while records wait.
        async with pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {schema}.projector_positions SET checked_at = now() - interval '1 hour'"
            )
        report = await m.sample()
        assert (
            group_of(report, "projection:orders").members,
            group_of(report, "projection:orders").status,
        ) == (0, "STOPPED")
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def test_the_order_view_follows_the_log(
    infra: Settings, topics: Topics, monitor: Callable[..., Awaitable[LagMonitor]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all")
    await producer.start()
    finished, waiting = lifecycle_events(), lifecycle_events()[:4]
    try:
        for event in [*finished, *waiting]:
            await producer.send_and_wait(
                topics.events, encode(event), key=key_for(event), headers=headers_for(event)
            )
    finally:
        await producer.stop()
    m = await monitor(stuck_pending_s=30.0, stuck_routing_s=30.0, stuck_submitted_s=0.001)
    await m.start(background=False)

    def seen(report: LagReport) -> bool:
        # occurred_at values are the test's "now" plus up to 50 ms: the waiting order is stuck (threshold
        # 1 ms) once the sample's clock has passed its submission.
        return (
            report.orders is not None and report.orders.seen["submitted"] == 2 and bool(report.orders.stuck)
        )

    report = await sample_until(m, seen, "both orders in the order view")
    orders = report.orders
    assert orders is not None
    assert orders.in_flight["submitted"] == 1 and orders.seen["confirmed"] == 1
    assert [s.order_id for s in orders.stuck] == [waiting[0].order_id]
    stages = {s.stage: s for s in report.stages}
    assert stages["end_to_end"].stat.count == 1
    assert stages["end_to_end"].stat.max_s == pytest.approx(0.04, abs=0.002)
    assert str(uuid.UUID(waiting[0].order_id)) == orders.stuck[0].order_id
