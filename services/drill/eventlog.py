"""The checker's own reader of the order event log: a `read_committed` consumer of every partition from the
beginning, no consumer group, nothing committed. It runs for the whole drill, so the moment each order's
terminal event became readable is known (recovery), and it reads everything before the checker judges.
Records are parsed by `services.drill.fold.parse`, not by the services' codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.drill.fold import TERMINAL, LoggedEvent, parse

log = logging.getLogger("oee.drill.log")


class LogWatcher:
    def __init__(self, bootstrap: str, topic: str, on_terminal: Callable[[str, float], object]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_terminal = on_terminal
        self.events: dict[str, list[LoggedEvent]] = defaultdict(list)
        self.undecodable: list[str] = []
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def start(self, timeout_s: float = 60.0) -> None:
        partitions = await self._partitions_of_topic(timeout_s)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        self._partitions = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)

    async def _partitions_of_topic(self, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                await admin.start()
                (described,) = await admin.describe_topics([self.topic])
                if described["partitions"]:
                    return sorted(p["partition"] for p in described["partitions"])
            except KafkaError as exc:
                log.debug("describing %s failed: %r", self.topic, exc)
            finally:
                await admin.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} not found on {self.bootstrap}")
            await asyncio.sleep(0.5)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()

    async def poll(self, timeout_ms: int = 500) -> int:
        assert self._consumer is not None
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        except KafkaError as exc:  # a broker fault: the consumer finds the new leaders by itself
            log.debug("log read failed (%r); reading on", exc)
            await asyncio.sleep(0.2)
            return 0
        now = time.time()
        count = 0
        for tp, records in batches.items():
            for record in records:
                count += 1
                if record.value is None:
                    self.undecodable.append(f"partition {tp.partition} offset {record.offset}: empty record")
                    continue
                try:
                    event = parse(record.value, tp.partition, record.offset, now)
                except ValueError as exc:
                    self.undecodable.append(str(exc))
                    continue
                self.events[event.order_id].append(event)
                if event.type in TERMINAL:
                    self.on_terminal(event.order_id, now)
        self.records += count
        return count

    async def caught_up(self) -> bool:
        """Whether every partition has been read to its last stable offset."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)  # read_committed: the last stable offsets
        for tp in self._partitions:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

    async def stop(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None
