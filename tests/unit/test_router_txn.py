"""What the router's transactional adapter relies on in librdkafka, held to it: which errors mean "fenced"
(the partition is someone else's now), and the consumer-group metadata bytes it builds for
`send_offsets_to_transaction` for a group that aiokafka/Faust owns — round-tripped through a real librdkafka
consumer, so a change of librdkafka's format fails here and not in a commit."""

from __future__ import annotations

import threading
import time

import pytest
from aiokafka.errors import InvalidProducerEpoch, KafkaConnectionError, ProducerFenced
from aiokafka.structs import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from services.rdkafka.groupmeta import group_metadata
from services.rdkafka.producer import AsyncProducer
from services.router import txn
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


class _Hanging:
    """Stands in for librdkafka's producer whose `send_offsets_to_transaction` ignores its timeout (librdkafka
    #5456/#5511: a SIGKILLed broker still cached as the group's coordinator)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.flushed = False

    def send_offsets_to_transaction(self, *args: object) -> None:
        self.release.wait(30)

    def flush(self, *args: object) -> int:
        self.flushed = True
        return 0


async def test_a_transaction_call_librdkafka_never_ends_is_given_up_and_the_producer_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(txn, "STUCK_AFTER_S", 0.3)
    producer = txn.KafkaTxnProducer("127.0.0.1:1", "oee-router.orders.requests.0")
    producer._producer = AsyncProducer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0}, poll=False)
    hanging = _Hanging()
    producer._producer.producer = hanging  # type: ignore[assignment]
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"send_offsets_to_transaction .* producer abandoned"):
            await producer.send_offsets_to_transaction(
                {TopicPartition("orders.requests", 0): 7}, "oee-router"
            )
        assert time.monotonic() - started < 5, "given up on at its deadline, not when librdkafka returned"
        assert not producer.can_abort(), "an abort would queue behind the call that never returned"
        started = time.monotonic()
        await producer.stop()  # abandoned: no flush queued behind the stuck call
        assert time.monotonic() - started < 1 and not hanging.flushed
    finally:
        hanging.release.set()
