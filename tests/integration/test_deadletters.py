"""The projector's dead letters through `oee deadletters`' functions, against the real broker and database:
a seq gap is set aside, listed, shown, replayed once its cause is fixed (and applied), and refused the second
time; a replay whose answer was lost is looked up, never sent twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode
from events.topics import DLQ_REPLAY_OF, Topics
from services.config import Settings
from services.deadletters import book, sources
from tests.projection_fixtures import (
    log_end,
    produce,
    running_projector,
    settings_for,
    wait_caught_up,
    wait_until,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.integration


async def _last_seq(db: asyncpg.Connection, schema: str, order_id: str) -> int | None:
    value: int | None = await db.fetchval(f'SELECT last_seq FROM "{schema}".orders WHERE id = $1', order_id)
    return value


async def test_a_seq_gap_is_listed_shown_and_replayed_once_after_the_fix(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    settings = settings_for(infra, topics)
    e1, e2, e3, *_ = lifecycle_events()
    # seq 3 arrives before seq 2: the projector sets it aside (a gap); seq 2 then arrives: the cause is gone.
    await produce(infra.bootstrap_servers, topics.events, [e1, e3, e2])
    where = book.Where.of(settings, schema)
    async with running_projector(settings, schema):
        await wait_caught_up(db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events))
        assert await _last_seq(db, schema, e1.order_id) == 2
        [dead] = await book.listing(where, "projector", 50)
        assert dead.id.startswith("projector/") and "SequenceGap" in dead.reason
        assert dead.origin_topic == topics.events and dead.replay is None
        shown = await book.find(where, dead.id)
        assert shown.value == encode(e3) and shown.key == e3.order_id.encode()
        assert ("type", b"OrderBuilding") in shown.headers, "the log's record gives its headers"

        done = await book.replay(where, dead.id)
        assert (done.topic, done.partition) == (topics.events, dead.partition) and not done.found

        async def applied() -> bool:
            return await _last_seq(db, schema, e1.order_id) == 3

        await wait_until(applied, 30, "the replayed seq 3 applied")
        copy = await sources.read_one(infra.bootstrap_servers, topics.events, done.partition, done.offset)
        assert copy.value == encode(e3) and (DLQ_REPLAY_OF, dead.id.encode()) in list(copy.headers)

        with pytest.raises(book.Refused, match="at most once"):
            await book.replay(where, dead.id)
        [again] = await book.listing(where, "projector", 50)
        assert again.replay is not None and again.replay.state == "replayed"
        assert again.replay.target_offset == done.offset


async def test_a_lost_answer_is_looked_up_and_never_sent_twice(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    settings = settings_for(infra, topics)
    e1, _, e3, *_ = lifecycle_events()
    await produce(infra.bootstrap_servers, topics.events, [e1, e3])  # seq 3 without 2: a dead letter
    where = book.Where.of(settings, schema)
    async with running_projector(settings, schema):
        await wait_caught_up(db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events))
    [dead] = await book.listing(where, "projector", 50)
    key = ("projector:" + schema, topics.events, dead.partition, dead.offset)
    start = await sources.end_offset(infra.bootstrap_servers, topics.events, dead.partition)

    async def claim(claimed_at: datetime) -> None:
        await db.execute(
            "INSERT INTO oee_state.dead_letter_replays (source, topic, partition, \"offset\", id, state, "
            "target_topic, target_partition, target_from, claimed_at, claimed_by) "
            "VALUES ($1, $2, $3, $4, $5, 'sending', $2, $3, $6, $7, 'test@here')",
            *key, dead.id, start, claimed_at,
        )  # fmt: skip

    # A claim still fresh, nothing in the log: someone is replaying it (or just lost the answer): refused.
    await claim(datetime.now(UTC))
    with pytest.raises(book.Refused, match="being replayed"):
        await book.replay(where, dead.id)
    # Its copy shows up (the earlier attempt landed after all): found, recorded, nothing sent again.
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        landed = await producer.send_and_wait(
            topics.events, encode(e3), key=e3.order_id.encode(), partition=dead.partition,
            headers=[(DLQ_REPLAY_OF, dead.id.encode())],
        )  # fmt: skip
    finally:
        await producer.stop()
    found = await book.replay(where, dead.id)
    assert found.found and found.offset == landed.offset
    end = await sources.end_offset(infra.bootstrap_servers, topics.events, dead.partition)
    assert end == landed.offset + 1, "nothing was appended by the look-up"
    with pytest.raises(book.Refused, match="at most once"):
        await book.replay(where, dead.id)


async def test_a_stale_claim_whose_copy_never_landed_is_sent(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    settings = settings_for(infra, topics)
    e1, _, e3, *_ = lifecycle_events()
    await produce(infra.bootstrap_servers, topics.events, [e1, e3])
    where = book.Where.of(settings, schema)
    async with running_projector(settings, schema):
        await wait_caught_up(db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events))
    [dead] = await book.listing(where, "projector", 50)
    start = await sources.end_offset(infra.bootstrap_servers, topics.events, dead.partition)
    stale = datetime.now(UTC) - timedelta(seconds=book.STALE_CLAIM_S + 5)
    await db.execute(
        "INSERT INTO oee_state.dead_letter_replays (source, topic, partition, \"offset\", id, state, "
        "target_topic, target_partition, target_from, claimed_at, claimed_by) "
        "VALUES ($1, $2, $3, $4, $5, 'sending', $2, $3, $6, $7, 'crashed@elsewhere')",
        "projector:" + schema, topics.events, dead.partition, dead.offset, dead.id, start, stale,
    )  # fmt: skip
    done = await book.replay(where, dead.id)
    assert not done.found and done.offset == start
    with pytest.raises(book.Refused, match="at most once"):
        await book.replay(where, dead.id)
