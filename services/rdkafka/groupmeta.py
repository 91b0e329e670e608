"""A consumer group's metadata as librdkafka's `send_offsets_to_transaction` takes it, for a group whose
members are not librdkafka consumers (the router's group belongs to Faust, i.e. aiokafka).

confluent-kafka passes the metadata as bytes in librdkafka's serialisation (`rd_kafka_consumer_group_metadata
_write`, format v2): b"CGMDv2:", the generation id (int32, native byte order), the group id, NUL, the member
id, NUL, one byte that is 1 when there is no group instance id (else 0, the instance id and a NUL).
Generation -1 with an empty member id is what a producer that is not a group member sends (the broker then
checks no generation, as for aiokafka's TxnOffsetCommit v0); a member's own generation and id would fence
a zombie by generation (KIP-447). `tests/unit/test_router_txn.py` round-trips these bytes through a real
librdkafka consumer, so a change of format fails there, not in a commit.
"""

from __future__ import annotations

import struct

MAGIC = b"CGMDv2:"


def group_metadata(
    group_id: str, generation: int = -1, member_id: str = "", instance_id: str | None = None
) -> bytes:
    for name, value in (("group id", group_id), ("member id", member_id), ("instance id", instance_id or "")):
        if not value.isprintable() or "\0" in value:
            raise ValueError(f"{name} must be printable: {value!r}")
    out = MAGIC + struct.pack("=i", generation) + group_id.encode() + b"\0" + member_id.encode() + b"\0"
    if instance_id is None:
        return out + b"\x01"
    return out + b"\x00" + instance_id.encode() + b"\0"
