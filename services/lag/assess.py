"""Turn one sample's raw readings into per-partition lag and statuses. Pure: the window is in memory.

A `Reading` is what was read of one reader of the log: a Kafka consumer group (its committed offsets) or a
projection (its positions stored in Postgres). Offset lag is measured against the last stable offset; a
partition whose committed offset is below it but with only transaction markers or aborted records left has
nothing to read, so its lag is 0 (offsets count markers too: one per transaction and partition).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.structs import TopicPartition

from services.lag.kafka import Unread
from services.lag.model import GroupLag, PartitionLag
from services.lag.postgres import StoredPosition
from services.lag.rules import Observation, Thresholds, partition_status, worst
from services.lag.window import SampleWindow

Key = tuple[str, str, int]  # (group, topic, partition)
PROJECTION_PREFIX = "projection:"  # a projection's stored positions show as reader `projection:<name>`


@dataclass(frozen=True, slots=True)
class Reading:
    group: str
    kind: str  # kafka | projection
    members: int | None
    state: str
    committed: Mapping[TopicPartition, int | None]  # None: no offset for this partition
    updated_age_s: Mapping[TopicPartition, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Offsets:
    """The log's side of one sample."""

    stable: Mapping[TopicPartition, int]  # last stable offsets
    high: Mapping[TopicPartition, int]  # high watermarks
    starts: Mapping[TopicPartition, int]  # log start offsets (only where something lacks a committed offset)
    unread: Mapping[tuple[TopicPartition, int], Unread | None]  # first_unread results


def start_of(reading: Reading, tp: TopicPartition, offsets: Offsets) -> int:
    """Where the reader reads next: its committed offset, or the log start without one."""
    committed = reading.committed.get(tp)
    return committed if committed is not None else offsets.starts.get(tp, 0)


def assess(
    reading: Reading,
    offsets: Offsets,
    now: float,
    window: SampleWindow[Key],
    thresholds: Thresholds,
) -> GroupLag:
    rows: list[PartitionLag] = []
    verdicts = []
    for tp in sorted(reading.committed, key=lambda t: (t.topic, t.partition)):
        if tp not in offsets.stable:
            continue  # the topic or partition went away
        committed = reading.committed[tp]
        end = offsets.stable[tp]
        start = start_of(reading, tp, offsets)
        key = (reading.group, tp.topic, tp.partition)
        lag = max(0, end - start)
        time_lag = 0.0
        if lag:
            found = offsets.unread.get((tp, start), _UNANSWERED)
            if found is None:
                lag = 0  # only markers or aborted records between the reader and the end
            elif isinstance(found, Unread):
                time_lag = max(0.0, now - found.timestamp_ms / 1000)
            else:  # no answer this time: the previous sample's age, grown by the time since
                last = window.get(key)
                time_lag = (last[-1].time_lag_s + now - last[-1].at) if last else 0.0
        observations = window.add(key, Observation(now, committed, end, lag, time_lag))
        verdict = partition_status(observations, reading.members, thresholds)
        verdicts.append((f"{tp.topic}[{tp.partition}]", verdict))
        rows.append(
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed=committed,
                end=end,
                lag=lag,
                time_lag_s=time_lag,
                status=verdict.status.value,
                reason=verdict.reason,
                log_end=offsets.high.get(tp),
                updated_age_s=reading.updated_age_s.get(tp),
            )
        )
    group = worst(verdicts)
    return GroupLag(
        group=reading.group,
        kind=reading.kind,
        status=group.status.value,
        reason=group.reason,
        members=reading.members,
        state=reading.state,
        partitions=tuple(rows),
    )


def complete(reading: Reading, parts: dict[str, list[int]]) -> Reading:
    """Every partition of each topic the group reads, the ones it never committed as None."""
    committed: dict[TopicPartition, int | None] = {}
    for topic in sorted({tp.topic for tp in reading.committed}):
        for p in parts.get(topic, ()):
            tp = TopicPartition(topic, p)
            committed[tp] = reading.committed.get(tp)
    return Reading(
        reading.group, reading.kind, reading.members, reading.state, committed, reading.updated_age_s
    )


def projection_readings(
    positions: list[StoredPosition], parts: dict[str, list[int]], alive_s: float = 10.0
) -> list[Reading]:
    """One reading per projection. Its liveness stands in for members: a projector that checked in within
    `alive_s` counts as 1, a silent one as 0 (unknown before migration 0002 added `checked_at`)."""
    by_projection: dict[str, list[StoredPosition]] = {}
    for p in positions:
        by_projection.setdefault(p.projection, []).append(p)
    out = []
    for name, rows in sorted(by_projection.items()):
        committed: dict[TopicPartition, int | None] = {
            TopicPartition(r.topic, r.partition): r.next_offset for r in rows
        }
        for topic in {r.topic for r in rows}:
            for part in parts.get(topic, ()):
                committed.setdefault(TopicPartition(topic, part), None)
        checked = [r.checked_age_s for r in rows if r.checked_age_s is not None]
        if checked:
            alive = min(checked) <= alive_s
            members: int | None = 1 if alive else 0
            state = "alive" if alive else f"silent for {min(checked):.0f} s"
        else:
            members, state = None, "unknown"
        ages = {TopicPartition(r.topic, r.partition): r.updated_age_s for r in rows}
        out.append(Reading(PROJECTION_PREFIX + name, "projection", members, state, committed, ages))
    return out


_UNANSWERED = object()
