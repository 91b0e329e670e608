"""The one place the router reaches into aiokafka's private state, held to it: if aiokafka renames its
transaction manager or its fatal-state check, this fails instead of the router misjudging a failed commit."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaConnectionError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from services.router.txn import fatal_state, is_fenced


async def test_the_fatal_state_check_reads_aiokafkas_transaction_manager() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="probe")
    try:
        assert fatal_state(producer) is False
        producer._txn_manager.state = TransactionState.FATAL_ERROR  # what a fenced or failed sender leaves
        assert fatal_state(producer) is True
    finally:
        await producer.stop()


def test_fenced_means_another_producer_owns_the_transactional_id() -> None:
    assert is_fenced(ProducerFenced()) and is_fenced(InvalidProducerEpoch())
    wrapped = RuntimeError("commit")
    wrapped.__cause__ = ProducerFenced()
    assert is_fenced(wrapped)
    assert not is_fenced(KafkaConnectionError("broker went away"))
