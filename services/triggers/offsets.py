"""The one place the trigger engine reaches into Faust: the offsets its consumer group may commit.

Faust acks a stream event in a `finally` block, whether the agent's body finished or raised, and commits
acked offsets on its timer and at shutdown (decision 0001 says why the router turns that off). A market
event must count only once the trigger requests it caused are acknowledged, so the commit Faust asks for
is clamped to what the engine has handled (`TriggerEngine.processed`): never past an event still in flight.
`tests/integration/test_triggers.py` fails loudly if the private attribute disappears.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

log = logging.getLogger("oee.triggers")


def clamp(offsets: Mapping[Any, int], processed: Mapping[tuple[str, int], int]) -> dict[Any, int]:
    """Each partition's offset to commit, no further than what was handled (none where nothing was)."""
    allowed = {}
    for tp, offset in offsets.items():
        handled = processed.get((tp.topic, tp.partition))
        if handled is not None:
            allowed[tp] = min(offset, handled)
    return allowed


def gate_commits(app: faust.App, processed: Callable[[], Mapping[tuple[str, int], int]]) -> None:
    """Make `app`'s consumer commit only handled offsets."""
    original = app.consumer._commit  # type: ignore[attr-defined]

    async def gated(offsets: Mapping[Any, int]) -> bool:
        allowed = clamp(offsets, processed())
        return bool(await original(allowed)) if allowed else True

    app.consumer._commit = gated  # type: ignore[attr-defined]


async def start_at_recent_market(bootstrap: str, group_id: str, topic: str, since_s: float) -> dict[int, int]:
    """For a group that never committed on `topic` (a first start), commit the offsets of `since_s` ago, so
    the engine does not evaluate a day of old market data one event at a time (the recent part is read back
    at start anyway). Best effort, before the group has members: a refused commit leaves Faust's default."""
    import time

    from aiokafka import AIOKafkaConsumer

    from services.triggers.engine import partitions_of

    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    seeded: dict[int, int] = {}
    try:
        consumer.assign(tps)
        fresh = [tp for tp in tps if await consumer.committed(tp) is None]
        if not fresh:
            return seeded
        since = await consumer.offsets_for_times({tp: int((time.time() - since_s) * 1000) for tp in fresh})
        ends = await consumer.end_offsets(fresh)
        chosen = {tp: (since[tp].offset if since.get(tp) is not None else ends[tp]) for tp in fresh}  # type: ignore[union-attr]
        try:
            await consumer.commit(chosen)
            seeded = {tp.partition: offset for tp, offset in chosen.items()}
        except KafkaError as exc:
            log.info("first start: could not skip old market data (%r); reading it all", exc)
    finally:
        await consumer.stop()
    return seeded
