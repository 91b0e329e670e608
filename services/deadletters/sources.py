"""Reading dead letters where they are kept: the router's dead-letter topic (Kafka) and the projector's
`projector_dead_letters` table (PostgreSQL), and a record of a topic by its position. Every read is
bounded: at most `limit` dead letters, a deadline on every Kafka read."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.codec import EventDecodeError, decode
from events.topics import DLQ_ERROR, DLQ_REPLAY_OF, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC
from projections.migrations import quote_ident
from projections.settings import PROJECTION_NAME
from services.deadletters.model import DeadLetter

READ_DEADLINE_S = 15.0


class NotFound(LookupError):
    """No record at that position (never written, deleted by retention, or an aborted transaction's)."""


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )


async def _started(bootstrap: str) -> AIOKafkaConsumer:
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions (none when it does not exist), from the admin API's metadata (a consumer's
    own covers only what it subscribed to)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [
        p["partition"] for t in described if t.get("error_code", 0) == 0 for p in t.get("partitions", ())
    ]
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_tail(bootstrap: str, topic: str, limit: int) -> list[ConsumerRecord]:
    """The last `limit` records of each partition of `topic` (read_committed), oldest first."""
    consumer = await _started(bootstrap)
    try:
        tps = await _partitions(bootstrap, topic)
        if not tps:
            return []
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        wanted = {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - limit))
        found: list[ConsumerRecord] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while wanted and time.monotonic() < deadline:
            batches = await consumer.getmany(*wanted, timeout_ms=300)
            for tp, records in batches.items():
                found.extend(r for r in records if r.offset < ends[tp])
            for tp in list(wanted):
                if await consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
        return found
    finally:
        await consumer.stop()


async def read_one(bootstrap: str, topic: str, partition: int, offset: int) -> ConsumerRecord:
    """The record at `topic[partition]@offset`, or `NotFound`."""
    consumer = await _started(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        if tp not in await _partitions(bootstrap, topic):
            raise NotFound(f"{topic} has no partition {partition}")
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if offset >= end:
            raise NotFound(f"{topic}[{partition}] ends at offset {end}: nothing at {offset}")
        consumer.seek(tp, offset)
        deadline = time.monotonic() + READ_DEADLINE_S
        while time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=300)).get(tp, []):
                if record.offset == offset:
                    return record
                if record.offset > offset:
                    raise NotFound(f"no record at {topic}[{partition}]@{offset} (an aborted transaction's)")
            if await consumer.position(tp) >= end:
                break
        raise NotFound(f"no record at {topic}[{partition}]@{offset}")
    finally:
        await consumer.stop()


async def find_replay(
    bootstrap: str, topic: str, partition: int, start: int, dead_letter_id: str, max_records: int = 1_000_000
) -> int | None:
    """The offset of the copy of `dead_letter_id` in `topic[partition]`, searched from `start` (by its
    `dlq.replay.of` header), or None when it is not there (at most `max_records` read)."""
    consumer = await _started(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if start >= end:
            return None
        consumer.seek(tp, start)
        wanted = dead_letter_id.encode()
        read = 0
        deadline = time.monotonic() + READ_DEADLINE_S * 4
        while read < max_records and time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=300)).get(tp, []):
                read += 1
                if (DLQ_REPLAY_OF, wanted) in list(record.headers):
                    return int(record.offset)
            if await consumer.position(tp) >= end:
                return None
        raise TimeoutError(f"looking for the copy of {dead_letter_id} in {topic}[{partition}] took too long")
    finally:
        await consumer.stop()


async def end_offset(bootstrap: str, topic: str, partition: int) -> int:
    consumer = await _started(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        if tp not in await _partitions(bootstrap, topic):
            raise NotFound(f"{topic} has no partition {partition}")
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


# -- the router's dead-letter topic --------------------------------------------------------------------------
def from_dead_letter_record(record: ConsumerRecord) -> DeadLetter:
    """A record of the dead-letter topic as a `DeadLetter` (its `dlq.*` headers say where from and why)."""
    headers = tuple((k, v or b"") for k, v in record.headers)
    named = dict(headers)

    def text(name: str, default: str = "?") -> str:
        raw = named.get(name)
        return raw.decode("utf-8", "replace") if raw is not None else default

    def number(name: str) -> int:
        raw = text(name, "-1")
        return int(raw) if raw.lstrip("-").isdigit() else -1

    replay_of = named.get(DLQ_REPLAY_OF)
    return DeadLetter(
        source="router",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        at=datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp else None,
        origin_topic=text(DLQ_SOURCE_TOPIC),
        origin_partition=number(DLQ_SOURCE_PARTITION),
        origin_offset=number(DLQ_SOURCE_OFFSET),
        reason=text(DLQ_ERROR, "(no dlq.error header)"),
        key=record.key,
        value=record.value,
        headers=headers,
        replay_of=replay_of.decode("utf-8", "replace") if replay_of is not None else None,
    )


# -- the projector's table ----------------------------------------------------------------------------------
def _projector_sql(schema: str) -> str:
    return (
        f'SELECT partition, "offset", reason, raw, recorded_at FROM {quote_ident(schema)}.projector_dead_letters '
        "WHERE projection = $1 AND topic = $2"
    )


def from_projector_row(row: asyncpg.Record, topic: str, schema: str) -> DeadLetter:
    return DeadLetter(
        source="projector",
        topic=topic,
        partition=row["partition"],
        offset=row["offset"],
        at=row["recorded_at"],
        origin_topic=topic,
        origin_partition=row["partition"],
        origin_offset=row["offset"],
        reason=row["reason"],
        key=None,
        value=bytes(row["raw"]) if row["raw"] is not None else None,
        extra={"projection": f"{PROJECTION_NAME} in schema {schema}"},
    )


async def projector_rows(
    conn: asyncpg.Connection, schema: str, topic: str, limit: int
) -> list[asyncpg.Record]:
    sql = _projector_sql(schema) + ' ORDER BY recorded_at DESC, partition, "offset" DESC LIMIT $3'
    return list(await conn.fetch(sql, PROJECTION_NAME, topic, limit))


async def projector_row(
    conn: asyncpg.Connection, schema: str, topic: str, partition: int, offset: int
) -> asyncpg.Record | None:
    sql = _projector_sql(schema) + ' AND partition = $3 AND "offset" = $4'
    row: asyncpg.Record | None = await conn.fetchrow(sql, PROJECTION_NAME, topic, partition, offset)
    return row


def key_of(value: bytes | None) -> bytes | None:
    """The order id an event's value names, as its record key (when the log's record is gone)."""
    try:
        return decode(value or b"").order_id.encode()
    except EventDecodeError:
        return None
