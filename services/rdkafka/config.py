"""librdkafka settings shared by every client of the hot path.

`partitioner=murmur2_random`: librdkafka's default (`consistent_random`, CRC32) would place a keyed record
elsewhere than aiokafka and the Java client do (murmur2 of the key), and the gateway's partition look-up
(`services.gateway.partitioning`), the co-partitioned state topic and every aiokafka producer left in tools
rely on murmur2 (`tests/integration/test_rdkafka_partitioner.py` holds the two to the same partition).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("oee.kafka")


def common(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        # Small requests on loopback: Nagle would hold a produce or a fetch back for the previous ack.
        "socket.nagle.disable": True,
        # librdkafka's log lines go through Python logging (served by the client's poll, like callbacks).
        "logger": log,
        "log_level": 4,  # warnings and worse: librdkafka logs every reconnect attempt at notice level
    }


def producer_config(bootstrap: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """An idempotent producer writing with acks=all, keys placed as the Java client places them."""
    return {
        **common(bootstrap, client_id),
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        **extra,
    }


def consumer_config(bootstrap: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """A read_committed consumer that commits nothing by itself (positions are the application's)."""
    return {
        **common(bootstrap, client_id),
        "group.id": f"{client_id}-unused",  # librdkafka wants one even for assign(); nothing is committed
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        **extra,
    }
