"""The transactional producer as the router uses it, and the one adapter that reaches into aiokafka.

`TxnProducer` is the whole surface the partition workers need: start (which runs `init_transactions`, so it
fences a previous owner of the same transactional id), the transaction calls, and `can_abort`. The real one
wraps `AIOKafkaProducer`; unit tests pass a fake with the same methods (`tests/unit/router_fakes.py`).

aiokafka has no public way to ask whether the producer's transaction state is fatal (after which an abort
is refused and the producer is useless): `can_abort` reads its private transaction manager, here only, and
`tests/unit/test_router_txn.py` fails loudly if that attribute changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced, TransactionalIdAuthorizationFailed
from aiokafka.structs import TopicPartition

FENCED: tuple[type[BaseException], ...] = (
    ProducerFenced,
    InvalidProducerEpoch,
    TransactionalIdAuthorizationFailed,
)
"""Errors that mean another producer owns this transactional id now: its partition belongs to someone else."""


def is_fenced(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, FENCED):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


class TxnProducer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]: ...
    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    def can_abort(self) -> bool: ...


class KafkaTxnProducer:
    """`TxnProducer` over aiokafka, configured for the router's transactions."""

    def __init__(self, bootstrap: str, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            # The broker answers CONCURRENT_TRANSACTIONS while the previous transaction of this id finishes;
            # aiokafka's default 100 ms wait before retrying would add itself to most commits.
            retry_backoff_ms=5,
            request_timeout_ms=30_000,
            transaction_timeout_ms=60_000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def begin_transaction(self) -> None:
        await self._producer.begin_transaction()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]:
        return await self._producer.send(
            topic, value, key=key, partition=partition, headers=list(headers) if headers else None
        )

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        await self._producer.send_offsets_to_transaction(offsets, group_id)

    async def commit_transaction(self) -> None:
        await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        await self._producer.abort_transaction()

    def can_abort(self) -> bool:
        return not fatal_state(self._producer)


def fatal_state(producer: AIOKafkaProducer) -> bool:
    """True once aiokafka put the producer's transactions in its fatal state (no abort possible)."""
    return bool(producer._txn_manager.is_fatal_error())
