"""`oee tail`: print the order event log, decoded, one line per event (undecodable records are shown
with their decode error and skipped, the way every consumer here treats them)."""

from __future__ import annotations

import sys
from typing import TextIO

import msgspec
from aiokafka import AIOKafkaConsumer

from events.codec import EventDecodeError, decode
from events.topics import Topics
from services.config import Settings


def describe(topic: str, partition: int, offset: int, raw: bytes | None) -> tuple[str | None, str]:
    """(order id or None, the line to print) for one record."""
    where = f"{topic}[{partition}]@{offset}"
    try:
        event = decode(raw or b"")
    except EventDecodeError as exc:
        return None, f"{where} UNDECODABLE ({type(exc).__name__}): {exc.reason}"
    data = msgspec.json.encode(event.data).decode()
    at = event.occurred_at.isoformat(timespec="milliseconds")
    return event.order_id, f"{where} {at} {event.order_id} #{event.seq} {event.type} {data}"


def start_note(from_beginning: bool, order_id: str | None, limit: int) -> str:
    """What a person watching sees first: whether history is shown, and how to get it when it is not
    (without it, `oee tail` on a quiet log prints nothing and looks stuck)."""
    then = f"until {limit} event(s)" if limit else "then follows new ones (Ctrl-C stops)"
    if from_beginning:
        what = f"order {order_id}'s events" if order_id else "every event"
        return f"oee tail: {what} from the start of the log, {then}"
    which = f"order {order_id}'s new events" if order_id else "new events"
    history = "drop --new" if order_id else "--from-beginning shows the history"
    return f"oee tail: following {which} only ({history}); Ctrl-C stops"


async def tail(
    settings: Settings,
    from_beginning: bool = False,
    order_id: str | None = None,
    limit: int = 0,
    out: TextIO = sys.stdout,
    err: TextIO | None = None,
) -> int:
    """Follow the event log (no consumer group, nothing committed); return the number of lines printed.
    `err` gets one line saying where reading starts, once the broker answered (so that a broker that does
    not answer is still the only line a failure prints)."""
    topics = Topics.with_prefix(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.events,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a consumer that failed to start still holds its client
        raise
    if err is not None:
        print(start_note(from_beginning, order_id, limit), file=err, flush=True)
    printed = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    oid, line = describe(tp.topic, tp.partition, record.offset, record.value)
                    if order_id and oid != order_id:
                        continue
                    print(line, file=out, flush=True)
                    printed += 1
                    if limit and printed >= limit:
                        return printed
    finally:
        await consumer.stop()
