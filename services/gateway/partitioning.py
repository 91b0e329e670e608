"""Which partition of the event log holds an order: the producers' default partitioner on the order id.

The router appends each event with key = order id and no explicit partition, so aiokafka's (and Kafka's
Java client's) default partitioner places it at murmur2(key) mod the partition count.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(order_id: str, partitions: int) -> int:
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    hashed: int = murmur2(order_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions
