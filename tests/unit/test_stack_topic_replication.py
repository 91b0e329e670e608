"""Our tooling's replication rule: the cluster's default, an explicit factor, and the refusals."""

from __future__ import annotations

import pytest

from events.topics import Replication, TopicSpec
from services.stack.procs import StackError
from services.stack.topics import plan_replication


def test_unset_follows_the_cluster() -> None:
    spec = TopicSpec("orders.events", 12)
    assert plan_replication(spec, 1) == Replication(1, 1)
    assert plan_replication(spec, 3) == Replication(3, 2)


def test_one_replica_on_a_multi_broker_cluster_is_refused_in_one_line() -> None:
    with pytest.raises(StackError) as caught:
        plan_replication(TopicSpec("orders.events", 12, replication_factor=1), 3)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "orders.events" in message and "1 replica" in message and "3-broker" in message
    assert plan_replication(TopicSpec("t", 1, replication_factor=1), 1) == Replication(1, 1)


def test_more_replicas_than_brokers_is_refused() -> None:
    with pytest.raises(StackError, match="3 replicas"):
        plan_replication(TopicSpec("t", 1, replication_factor=3), 2)
    assert plan_replication(TopicSpec("t", 1, replication_factor=2), 3) == Replication(2, 1)
