"""What the router's transactional adapter relies on in librdkafka, held to it: which errors mean "fenced"
(the partition is someone else's now), and the consumer-group metadata bytes it builds for
`send_offsets_to_transaction` for a group that aiokafka/Faust owns — round-tripped through a real librdkafka
consumer, so a change of librdkafka's format fails here and not in a commit."""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidProducerEpoch, KafkaConnectionError, ProducerFenced
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from services.rdkafka.groupmeta import group_metadata
from services.router.txn import is_fenced


def test_fenced_means_another_producer_owns_the_transactional_id() -> None:
    assert is_fenced(ProducerFenced()) and is_fenced(InvalidProducerEpoch())
    for code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
        assert is_fenced(KafkaException(KafkaError(code, "fenced", fatal=True)))
    wrapped = RuntimeError("commit")
    wrapped.__cause__ = KafkaException(KafkaError(KafkaError._FENCED))
    assert is_fenced(wrapped)
    assert not is_fenced(KafkaConnectionError("broker went away"))
    assert not is_fenced(KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away")))


def test_group_metadata_is_what_a_librdkafka_consumer_of_the_group_writes() -> None:
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "oee-router"})
    try:
        # A consumer that has not joined: generation -1, no member id, no instance id.
        assert group_metadata("oee-router") == consumer.consumer_group_metadata()
    finally:
        consumer.close()


def test_librdkafka_reads_the_metadata_back_with_a_generation_and_member() -> None:
    """A producer accepts the bytes (format checked by librdkafka's reader) before it needs a broker: with a
    non-transactional producer the call fails on *that*, not on the metadata."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})
    for metadata in (
        group_metadata("g", 7, "member-1"),
        group_metadata("g", 7, "member-1", instance_id="router-a"),
    ):
        with pytest.raises(KafkaException) as raised:
            producer.send_offsets_to_transaction([], metadata, 0.1)
        assert raised.value.args[0].code() == KafkaError._NOT_CONFIGURED, raised.value.args[0].str()
    with pytest.raises(KafkaException) as bad:
        producer.send_offsets_to_transaction([], b"CGMDv1:" + group_metadata("g")[7:], 0.1)
    assert bad.value.args[0].code() == KafkaError._BAD_MSG
    with pytest.raises(ValueError):
        group_metadata("g\nx")
    producer.flush(0)
