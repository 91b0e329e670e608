"""Topic names, partition counts and configs, as plain data every service and the stack share.

- ``orders.requests`` — the intake: the ingress appends each accepted order's `OrderRequested` here (key =
  order id) and the router consumes it. Nothing else reads it, so the router sees one record per order.
- ``orders.events`` — the order event log, the source of truth: the router appends every lifecycle event of an
  order, the request's copy first (seq 1), then routing, building, submitted and exactly one terminal event.
  Key = order id, so one order's events live in one partition in seq order. The projector and the WebSocket
  gateway consume it. Kept forever: replaying it from offset 0 rebuilds every projection.
- ``orders.router-state`` — the router's memory of each order (key = order id, compacted), written in the
  same transactions as its events, so a restarted router resumes every order where the log left it, and a
  duplicate request is recognised for at least a week (`ROUTER_STATE_RETENTION_MS`).
- ``orders.deadletter`` — records a consumer could not decode or apply, copied verbatim (key and value) with
  the `DLQ_*` headers below saying where they came from and why, so the stream keeps flowing past them.
- ``orders.resting`` — the limit and sniper orders waiting for the market (key = order id, compacted): the
  router writes an order's record in the transaction that opens it and a tombstone in the one that takes it
  out of `open` (triggered, expired, cancelled, refused), so the trigger engine restores the whole book of
  resting orders by reading this topic to its end. Partitioned like the intake.
- ``market.data`` — the venues' pool states (`events.market`: `PoolPriced`, `PoolListed`), key = the pair,
  so one pair's events of both venues stay in order in one partition. The trigger engine consumes it. Kept a
  day: the engine needs it only from its committed offset (an order's own events record what fired it).

The intake topic carries `OrderRequested` and the commands of `events.commands` (cancel and trigger
requests), all keyed by order id: the owner of an order reads everything about it in one sequence.

All names take a prefix (`OEE_TOPIC_PREFIX`), which tests use to get topics of their own.

Replication follows the cluster (`replication_for`): as many copies as it has brokers, up to three, and
`min.insync.replicas` 2 once there are three, so an `acks=all` write is on two disks before it is
acknowledged and one broker may be lost without refusing writes. One broker (the local default) gets 1 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PARTITIONS = 12

DLQ_SOURCE_TOPIC = "dlq.source.topic"
DLQ_SOURCE_PARTITION = "dlq.source.partition"
DLQ_SOURCE_OFFSET = "dlq.source.offset"
DLQ_ERROR = "dlq.error"
DLQ_HEADERS = (DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET, DLQ_ERROR)
DLQ_REPLAY_OF = "dlq.replay.of"
"""On a record `oee deadletters replay` appended to its source topic: the id of the dead letter it replays.
Not one of `DLQ_HEADERS`: a replay that fails again keeps it, so its new dead letter says what it replays."""

_MAX_ERROR_BYTES = 4096


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment (or one test)."""

    requests: str
    events: str
    dead_letters: str
    router_state: str
    resting: str
    market_data: str

    @classmethod
    def with_prefix(cls, prefix: str = "") -> Topics:
        return cls(
            requests=f"{prefix}orders.requests",
            events=f"{prefix}orders.events",
            dead_letters=f"{prefix}orders.deadletter",
            router_state=f"{prefix}orders.router-state",
            resting=f"{prefix}orders.resting",
            market_data=f"{prefix}market.data",
        )


@dataclass(frozen=True)
class TopicSpec:
    """What to create: a name, a partition count and topic-level configs (string values, as Kafka wants).

    `replication_factor` None means "as the cluster allows" (`replication_for`); `min.insync.replicas` is
    set from the factor when the topic is created, so it is not part of `config`."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int | None = None


MAX_REPLICATION = 3


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """The replication of a topic on a cluster of `brokers`: min(3, brokers) copies, two in sync at 3."""
    if brokers < 1:
        raise ValueError("a cluster has at least one broker")
    return replication_of(min(MAX_REPLICATION, brokers))


def replication_of(factor: int) -> Replication:
    """`min.insync.replicas` for `factor` copies: 2 from three copies on (one broker may be lost while
    writes go on, and each acknowledged write is on two), else 1 (two copies with 2 in sync would stop
    every write while either broker is down)."""
    if factor < 1:
        raise ValueError("a topic has at least one replica")
    return Replication(factor, 2 if factor >= 3 else 1)


def _log_config() -> dict[str, str]:
    # Kept forever: the log is the source of truth, projections are rebuilt from offset 0.
    return {"retention.ms": "-1", "cleanup.policy": "delete"}


ROUTER_STATE_RETENTION_MS = 7 * 24 * 3600 * 1000


def _state_config() -> dict[str, str]:
    # One record per order survives compaction; records older than the retention go entirely, which bounds
    # how long a finished order is remembered (the ingress promises idempotency keys for 24 h).
    return {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(ROUTER_STATE_RETENTION_MS),
        "segment.ms": str(3600 * 1000),
    }


def _resting_config() -> dict[str, str]:
    # Compacted only: a resting order's record must outlive any time retention (it goes with its tombstone),
    # and tombstones are dropped a day after compaction, so the topic holds the open orders and little else.
    return {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000), "min.insync.replicas": "1"}


MARKET_DATA_RETENTION_MS = 24 * 3600 * 1000


def _market_config() -> dict[str, str]:
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(MARKET_DATA_RETENTION_MS),
        "segment.ms": str(3600 * 1000),
        "min.insync.replicas": "1",
    }


def topic_specs(
    topics: Topics, partitions: int = DEFAULT_PARTITIONS, dead_letter_partitions: int = 1
) -> list[TopicSpec]:
    """The topics to create. Requests and events share a partition count so an order keeps its partition
    number from intake to log (key = order id, the same default partitioner).
    """
    if partitions < 1 or dead_letter_partitions < 1:
        raise ValueError("partition counts must be >= 1")
    return [
        TopicSpec(topics.requests, partitions, _log_config()),
        TopicSpec(topics.events, partitions, _log_config()),
        TopicSpec(topics.dead_letters, dead_letter_partitions, _log_config()),
        TopicSpec(topics.router_state, partitions, _state_config()),
        TopicSpec(topics.resting, partitions, _resting_config()),
        TopicSpec(topics.market_data, partitions, _market_config()),
    ]


def dead_letter_headers(
    source_topic: str, partition: int, offset: int, error: str, headers: list[tuple[str, bytes]] | None = None
) -> list[tuple[str, bytes]]:
    """Headers for a dead-lettered record: its original headers (minus stale DLQ ones) plus where and why.

    The error text is cut to 4 KiB so a huge exception message cannot make the record too large.
    """
    kept = [(k, v) for k, v in headers or () if k not in DLQ_HEADERS]
    return [
        *kept,
        (DLQ_SOURCE_TOPIC, source_topic.encode()),
        (DLQ_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_ERROR, error.encode("utf-8", "replace")[:_MAX_ERROR_BYTES].decode("utf-8", "ignore").encode()),
    ]
