"""Topic layout as plain data: names, partitions, retention and the dead-letter headers."""

from __future__ import annotations

import pytest

from events.topics import (
    DEFAULT_PARTITIONS,
    DLQ_ERROR,
    DLQ_HEADERS,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    Replication,
    Topics,
    dead_letter_headers,
    replication_for,
    replication_of,
    topic_specs,
)


def test_topic_names_with_and_without_a_prefix() -> None:
    assert Topics.with_prefix() == Topics(
        "orders.requests", "orders.events", "orders.deadletter", "orders.router-state", "orders.resting",
        "market.data",
    )  # fmt: skip
    test = Topics.with_prefix("t1a2b3.")
    assert (test.requests, test.events, test.dead_letters, test.router_state) == (
        "t1a2b3.orders.requests",
        "t1a2b3.orders.events",
        "t1a2b3.orders.deadletter",
        "t1a2b3.orders.router-state",
    )


def test_specs_keep_the_log_forever_and_share_the_partition_count() -> None:
    topics = Topics.with_prefix("x.")
    requests, events, dead, _state, _resting, _market = topic_specs(topics)
    assert [s.name for s in (requests, events, dead)] == [topics.requests, topics.events, topics.dead_letters]
    assert requests.partitions == events.partitions == DEFAULT_PARTITIONS == 12
    assert dead.partitions == 1
    for spec in (requests, events, dead):
        assert spec.config == {"retention.ms": "-1", "cleanup.policy": "delete"}
        assert spec.replication_factor is None, "replication follows the cluster unless a spec asks"
        assert all(isinstance(v, str) for v in spec.config.values()), "Kafka configs are strings"
    assert requests.config is not events.config, "specs do not share a mutable config"
    assert [s.partitions for s in topic_specs(topics, partitions=3)] == [3, 3, 1, 3, 3, 3]


def test_resting_orders_are_compacted_and_copartitioned_market_data_kept_a_day() -> None:
    topics = Topics.with_prefix()
    specs = {s.name: s for s in topic_specs(topics, partitions=5)}
    resting, market = specs[topics.resting], specs[topics.market_data]
    assert resting.partitions == 5, "the router pins a resting record to its intake partition"
    assert resting.config["cleanup.policy"] == "compact", "no time retention: an order rests until it leaves"
    assert market.config["cleanup.policy"] == "delete"
    assert int(market.config["retention.ms"]) == 24 * 3600 * 1000


def test_router_state_is_compacted_copartitioned_and_bounded() -> None:
    topics = Topics.with_prefix()
    state = next(s for s in topic_specs(topics, partitions=5) if s.name == topics.router_state)
    assert state.partitions == 5, "co-partitioned with the intake: partition p restores intake partition p"
    assert state.config["cleanup.policy"] == "compact,delete"
    assert int(state.config["retention.ms"]) >= 24 * 3600 * 1000, "covers the 24 h idempotency promise"


def test_replication_follows_the_cluster_up_to_three_copies_two_in_sync() -> None:
    assert replication_for(1) == Replication(1, 1)
    assert replication_for(2) == Replication(2, 1), (
        "two copies with 2 in sync would stop writes with one down"
    )
    assert replication_for(3) == Replication(3, 2)
    assert replication_for(7) == Replication(3, 2)
    assert replication_of(5) == Replication(5, 2)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            replication_for(bad)
        with pytest.raises(ValueError):
            replication_of(bad)


def test_partition_counts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        topic_specs(Topics.with_prefix(), partitions=0)


def test_dead_letter_headers_say_where_from_and_why() -> None:
    original = [("type", b"OrderRouting"), (DLQ_ERROR, b"stale from an earlier hop")]
    headers = dead_letter_headers("orders.events", 7, 123456, "invalid OrderRouting: seq", original)
    assert headers == [
        ("type", b"OrderRouting"),
        (DLQ_SOURCE_TOPIC, b"orders.events"),
        (DLQ_SOURCE_PARTITION, b"7"),
        (DLQ_SOURCE_OFFSET, b"123456"),
        (DLQ_ERROR, b"invalid OrderRouting: seq"),
    ]
    assert DLQ_HEADERS == ("dlq.source.topic", "dlq.source.partition", "dlq.source.offset", "dlq.error")


def test_a_huge_error_is_cut_to_valid_utf8() -> None:
    headers = dict(dead_letter_headers("t", 0, 0, "é" * 10_000))
    assert len(headers[DLQ_ERROR]) <= 4096
    assert headers[DLQ_ERROR].decode() == "é" * 2048
