"""Stand-ins for driving the router core without a broker: a fake broker whose transactional producers
keep Kafka's promises (a transaction is seen whole or not at all, a newer producer of the same
transactional id fences the older one), with commits that can be made to fail; and a venue wrapper that
can go down, lose submit requests, or lose their replies. The venues themselves are the real simulators."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka.errors import KafkaConnectionError, ProducerFenced
from aiokafka.structs import TopicPartition

from events.codec import decode
from events.envelope import Event
from services.router import statestore
from services.router.memory import OrderMemory
from services.router.statestore import Restored
from services.venue.interface import (
    Side,
    SubmitOutcomeUnknown,
    SubmitReceipt,
    SwapStatus,
    VenueQuote,
    VenueUnavailable,
)
from services.venue.simulator import SimulatedVenue
from tests.waiting import until as until  # the router tests import it from here


@dataclass
class Written:
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class CommitFault:
    """Make the next commit of partition `partition`'s producer fail; `landed`: after it was written (the
    reply lost), else before (nothing written)."""

    partition: int
    landed: bool = False


@dataclass
class FakeBroker:
    partitions: int = 3
    logs: defaultdict[tuple[str, int], list[Written]] = field(default_factory=lambda: defaultdict(list))
    epochs: dict[str, int] = field(default_factory=dict)
    group_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    faults: list[CommitFault] = field(default_factory=list)
    commits: int = 0
    failed_commits: int = 0

    def producer(self, transactional_id: str) -> FakeProducer:
        return FakeProducer(self, transactional_id)

    def restorer(self, state_topic: str, done_capacity: int = 200_000) -> Callable[[int], Any]:
        async def restore(p: int) -> Restored:
            restored = Restored(OrderMemory(done_capacity))
            statestore.fold(restored, ((w.key, w.value) for w in self.logs[(state_topic, p)]))
            return restored

        return restore

    def fail_commit(self, partition: int, *, landed: bool = False) -> None:
        self.faults.append(CommitFault(partition, landed))

    def take_fault(self, transactional_id: str) -> CommitFault | None:
        for fault in self.faults:
            if transactional_id.endswith(f".{fault.partition}"):
                self.faults.remove(fault)
                return fault
        return None

    def events(self, topic: str) -> dict[str, list[Event]]:
        """Every committed event of `topic`, by order, in log order per partition."""
        by_order: dict[str, list[Event]] = defaultdict(list)
        for p in range(self.partitions):
            for written in self.logs[(topic, p)]:
                assert written.value is not None
                event = decode(written.value)
                by_order[event.order_id].append(event)
        return by_order

    def partition_of(self, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % self.partitions


class FakeProducer:
    """`services.router.txn.TxnProducer` over a `FakeBroker`."""

    def __init__(self, broker: FakeBroker, transactional_id: str) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self.epoch = -1
        self.pending: list[tuple[tuple[str, int], Written]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.stopped = False

    def _check(self) -> None:
        if self.broker.epochs.get(self.transactional_id) != self.epoch:
            raise ProducerFenced()

    async def start(self) -> None:
        # init_transactions: a new epoch fences every older producer of this id (its open transaction dies).
        self.epoch = self.broker.epochs.get(self.transactional_id, -1) + 1
        self.broker.epochs[self.transactional_id] = self.epoch

    async def stop(self) -> None:
        self.stopped = True

    async def begin_transaction(self) -> None:
        self._check()
        self.pending, self.offsets = [], {}

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._check()
        p = partition if partition is not None else self.broker.partition_of(key)
        self.pending.append(((topic, p), Written(key, value, list(headers or ()))))

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        self._check()
        self.offsets.update({(tp.topic, tp.partition): o for tp, o in offsets.items()})

    async def commit_transaction(self) -> None:
        self._check()
        fault = self.broker.take_fault(self.transactional_id)
        if fault is not None and not fault.landed:
            self.broker.failed_commits += 1
            raise KafkaConnectionError("injected: the commit never reached the coordinator")
        for where, written in self.pending:
            self.broker.logs[where].append(written)
        self.broker.group_offsets.update(self.offsets)
        self.broker.commits += 1
        self.pending, self.offsets = [], {}
        if fault is not None:
            self.broker.failed_commits += 1
            raise KafkaConnectionError("injected: the commit landed but its reply was lost")

    async def abort_transaction(self) -> None:
        self.pending, self.offsets = [], {}

    def can_abort(self) -> bool:
        return True


class FaultyVenue:
    """A simulated venue behind a switchable fault, as the router sees it over a network.

    `down`: quotes and status look-ups are not served, and submits are lost. `lose_submits`: a submit is
    lost on its way (never reaches the venue) and the caller cannot tell: `SubmitOutcomeUnknown`.
    `drop_replies`: a submit reaches the venue, its reply is lost. Settlements reach `on_settled`
    subscribers only while the venue is up (a feed that is down misses them). `status_calls` has the number
    of ids of each `status_many` call."""

    def __init__(self, inner: SimulatedVenue) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False
        self.lose_submits = False
        self.drop_replies = False
        self.status_calls: list[int] = []

    def on_settled(self, callback: Callable[[SwapStatus], None]) -> Callable[[], None]:
        def forward(status: SwapStatus) -> None:
            if not self.down:
                callback(status)

        return self.inner.on_settled(forward)

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        if self.down:
            raise VenueUnavailable(self.name, "down")
        return await self.inner.quote(base, quote, side, amount_in)

    async def submit(
        self,
        client_order_id: str,
        base: str,
        quote: str,
        side: Side,
        amount_in: float,
        limit_price: float,
        valid_until: datetime | None = None,
    ) -> SubmitReceipt:
        if self.down or self.lose_submits:
            raise SubmitOutcomeUnknown(self.name, "no reply (the request was lost)")
        receipt = await self.inner.submit(
            client_order_id, base, quote, side, amount_in, limit_price, valid_until
        )
        if self.drop_replies:
            raise SubmitOutcomeUnknown(self.name, "no reply (the reply was lost)")
        return receipt

    async def status(self, client_order_id: str) -> SwapStatus:
        return (await self.status_many([client_order_id]))[0]

    async def status_many(self, client_order_ids: Sequence[str]) -> list[SwapStatus]:
        self.status_calls.append(len(client_order_ids))
        if self.down:
            raise VenueUnavailable(self.name, "down")
        return await self.inner.status_many(client_order_ids)

    async def aclose(self) -> None:
        await self.inner.aclose()
