"""An asyncio face for a librdkafka producer, without a thread-pool hop per record.

`produce` only enqueues (librdkafka's `produce` never blocks: it copies the record into its queue) and
returns a future for the delivery report. Delivery reports are served by one poll thread per producer, which
hands every report it has to the event loop in one `call_soon_threadsafe` (not one per record). The blocking
calls of librdkafka (flush, metadata, and the transactional ones in `services.router.txn`) run in a thread of
the producer's own, once per call, never per record.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, Message, Producer

T = TypeVar("T")

Delivery = asyncio.Future[Message]


class AsyncProducer:
    """One librdkafka producer, its poll thread and its thread for blocking calls. Create it on the loop
    that will await its futures; `close` it there."""

    def __init__(self, config: dict[str, Any], *, name: str = "producer", poll: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self.fatal: KafkaError | None = (
            None  # set once librdkafka reports a fatal error: the producer is done
        )
        self._on_error: list[Callable[[KafkaError], None]] = []
        self.producer = Producer({**config, "error_cb": self._error})
        self._reports: deque[tuple[Delivery, KafkaError | None, Message]] = deque()
        self._scheduled = False
        self._closing = threading.Event()
        self._blocking = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-calls")
        # Without a poll thread (`poll=False`), reports and errors are served by the blocking calls (a
        # transactional producer's commit flushes and serves them): one thread wake-up per transaction
        # instead of one per delivery report as well.
        self._poller: threading.Thread | None = None
        if poll:
            self._poller = threading.Thread(target=self._poll, name=f"{name}-poll", daemon=True)
            self._poller.start()

    def on_error(self, callback: Callable[[KafkaError], None]) -> None:
        """Call `callback` on the event loop for every error librdkafka reports (most are transient)."""
        self._on_error.append(callback)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Delivery:
        """Enqueue one record; the future resolves with its delivery report (raises `KafkaException` on a
        delivery error). Raises at once (`BufferError`, `KafkaException`) when the record was not queued."""
        future: Delivery = self._loop.create_future()
        self.producer.produce(
            topic,
            value,
            key,
            partition=-1 if partition is None else partition,
            headers=_headers(headers),
            on_delivery=partial(self._delivered, future),
        )
        return future

    def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        """Enqueue one record whose delivery nobody waits for (a transaction's commit reports its failure)."""
        self.producer.produce(
            topic, value, key, partition=-1 if partition is None else partition, headers=_headers(headers)
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking librdkafka call (it releases the GIL) in this producer's thread."""
        return await self._loop.run_in_executor(self._blocking, fn, *args)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout_s`), stop the poll thread, release librdkafka."""
        try:
            await self.call(self.producer.flush, timeout_s)
        finally:
            self._closing.set()
            if self._poller is not None:
                await self._loop.run_in_executor(self._blocking, self._poller.join)
            self._blocking.shutdown(wait=False)

    def abandon(self) -> None:
        """Let go of a producer whose blocking thread is stuck inside librdkafka: stop its poll thread, take no
        more calls, and wait for nothing (the handle is freed when the stuck call returns, if ever)."""
        self._closing.set()
        self._blocking.shutdown(wait=False)

    # -- the poll thread and the hand-over to the loop -----------------------------------------------------
    def _poll(self) -> None:
        while not self._closing.is_set():
            self.producer.poll(0.1)  # serves delivery reports and errors; waits without the GIL

    def _delivered(self, future: Delivery, err: KafkaError | None, msg: Message) -> None:
        # Any thread that serves the queue lands here (the poll thread, or a blocking flush/commit call).
        self._reports.append((future, err, msg))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        self._scheduled = False  # before draining: a report appended from now on schedules another run
        reports = self._reports
        while reports:
            future, err, msg = reports.popleft()
            if future.done():  # its caller gave up (deadline): nothing to tell
                continue
            if err is None:
                future.set_result(msg)
            else:
                future.set_exception(KafkaDeliveryError(err))

    def _error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
        if self._on_error and not self._loop.is_closed():
            for callback in self._on_error:
                self._loop.call_soon_threadsafe(callback, err)


def _headers(headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, str | bytes | None]] | None:
    return list(headers) if headers else None


class KafkaDeliveryError(Exception):
    """A record's delivery failed; `error` is librdkafka's error (code, retriable, fatal)."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error
