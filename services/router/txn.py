"""The transactional producer as the router uses it: the protocol the partition workers need, and its one
implementation on librdkafka (confluent-kafka; decision 0016).

`TxnProducer` is the whole surface: start (which runs `init_transactions`, so it fences a previous owner of
the same transactional id and aborts its open transaction), the transaction calls, and `can_abort`.
`produce` only enqueues a record: librdkafka's `commit_transaction` flushes the transaction's records first
and fails (abortable) when any of them was refused, so a transaction is never committed without a record.
The blocking calls (init, begin, send offsets, commit, abort) run in the producer's own thread, once per
transaction. Unit tests pass a fake with the same methods (`tests/router_fakes.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka.errors import InvalidProducerEpoch, ProducerFenced, TransactionalIdAuthorizationFailed
from aiokafka.structs import TopicPartition
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition

from services.rdkafka.config import producer_config
from services.rdkafka.groupmeta import group_metadata
from services.rdkafka.producer import AsyncProducer

FENCED: tuple[type[BaseException], ...] = (
    ProducerFenced,
    InvalidProducerEpoch,
    TransactionalIdAuthorizationFailed,
)
"""aiokafka's errors that mean another producer owns this transactional id (the test fakes raise them)."""

FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
"""librdkafka's codes for the same: its partition belongs to someone else now."""

TXN_TIMEOUT_S = 30.0  # initialising a producer's transactions (librdkafka retries inside it)
COMMIT_TIMEOUT_S = 5.0
"""One call that ends a transaction (send its offsets, commit, abort). A transaction still open holds back
every read_committed reader of the partitions it wrote to (their last stable offset stops at its first
record), so a commit whose coordinator died mid-call must not wait long: past this it fails, the partition
recovers in-process, and the new producer's initialisation (same transactional id, next epoch) ends the old
transaction. Commits take milliseconds here, tens of them at the worst loads measured."""
STUCK_AFTER_S = COMMIT_TIMEOUT_S + 2.0
"""librdkafka does not always keep its own timeout: `send_offsets_to_transaction` can block for as long as a
SIGKILLed broker stays cached as the group's coordinator (librdkafka issues #5456 and #5511, open in 2.14).
Past this the call is given up on from here: the producer is abandoned (its thread left inside the call),
never waited for again, and the partition recovers on a new one."""


def is_fenced(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, FENCED):
            return True
        if isinstance(cause, KafkaException) and cause.args and isinstance(cause.args[0], KafkaError):
            if cause.args[0].code() in FENCED_CODES:
                return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


class TxnProducer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None: ...
    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    def can_abort(self) -> bool: ...


class KafkaTxnProducer:
    """`TxnProducer` over librdkafka, configured for the router's transactions."""

    def __init__(self, bootstrap: str, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self.config = producer_config(
            bootstrap,
            f"oee-router-{transactional_id.rsplit('.', 1)[-1]}",
            **{
                "transactional.id": transactional_id,
                "transaction.timeout.ms": 60_000,
                # The commit flushes regardless of linger; between commits records wait for it anyway.
                "linger.ms": 5,
                # The broker answers CONCURRENT_TRANSACTIONS while the previous transaction of this id
                # finishes its markers: retry after milliseconds, not librdkafka's default 100 ms.
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 100,
                "topic.metadata.refresh.sparse": True,
            },
        )
        self._producer: AsyncProducer | None = None
        self._fatal = False
        self._stuck = False  # a call ending a transaction never returned: abandoned, not closed

    @property
    def _p(self) -> AsyncProducer:
        if self._producer is None:
            raise RuntimeError(f"producer {self.transactional_id} is not started")
        return self._producer

    async def start(self) -> None:
        self._producer = AsyncProducer(
            self.config, name=f"txn-{self.transactional_id.rsplit('.', 1)[-1]}", poll=False
        )
        await self._blocking(self._p.producer.init_transactions, TXN_TIMEOUT_S)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            if self._stuck:
                producer.abandon()  # a close would wait behind the call that never returned
            else:
                await producer.close(timeout_s=5.0)

    async def begin_transaction(self) -> None:
        # No request to the broker, but librdkafka hands every transactional call to its main thread and
        # waits for the answer, which can take milliseconds while that thread finishes the previous
        # commit: not on the event loop.
        await self._blocking(self._p.producer.begin_transaction)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        try:
            self._p.enqueue(topic, value, key, partition=partition, headers=headers)
        except KafkaException as exc:
            self._note(exc)
            raise

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        positions = [RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        await self._ending(
            self._p.producer.send_offsets_to_transaction,
            positions,
            group_metadata(group_id),
            COMMIT_TIMEOUT_S,
        )

    async def commit_transaction(self) -> None:
        await self._ending(self._p.producer.commit_transaction, COMMIT_TIMEOUT_S)

    async def abort_transaction(self) -> None:
        try:
            await self._ending(self._p.producer.abort_transaction, COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            # No transaction open: the call being aborted (a commit whose caller was cancelled, at a stop)
            # finished in its thread first. Nothing is left to abort; the state topic says what committed.
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError._STATE:
                return
            raise

    def can_abort(self) -> bool:
        return (
            self._producer is not None
            and not self._fatal
            and not self._stuck
            and self._producer.fatal is None
        )

    async def _ending(self, fn: Callable[..., object], *args: object) -> None:
        """A call that ends a transaction, given up on past `STUCK_AFTER_S` whatever librdkafka does."""
        try:
            await asyncio.wait_for(self._blocking(fn, *args), STUCK_AFTER_S)
        except TimeoutError:
            self._stuck = True
            raise TimeoutError(
                f"{getattr(fn, '__name__', 'call')} of {self.transactional_id} still running after "
                f"{STUCK_AFTER_S:g} s (librdkafka ignored its {COMMIT_TIMEOUT_S:g} s timeout): producer abandoned"
            ) from None

    async def _blocking(self, fn: Callable[..., object], *args: object) -> None:
        try:
            await self._p.call(fn, *args)
        except KafkaException as exc:
            self._note(exc)
            raise

    def _note(self, exc: KafkaException) -> None:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.fatal():
            self._fatal = True  # librdkafka refuses every call now, abort included
