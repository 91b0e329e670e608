"""The ingress's one Kafka producer: durable, idempotent, connecting in the background, bounded in time.

`publish` returns only once the broker acknowledged the record with acks=all, and raises a typed error
otherwise: `BrokerUnavailable` when the record was certainly not written (not connected yet, or rejected),
`PublishTimeout` when its fate is unknown (appended to a batch but not acknowledged before the deadline; it
may still land in the log). Either way the caller must not tell a client its order was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    NotEnoughReplicasAfterAppendError,
    RequestTimedOutError,
)

from events.codec import encode, headers_for, key_for
from events.envelope import Event

log = logging.getLogger("oee.ingress.publisher")

_UNKNOWN_OUTCOME = (KafkaTimeoutError, RequestTimedOutError, NotEnoughReplicasAfterAppendError)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int


class BrokerUnavailable(Exception):
    """The record was not written: the broker is unreachable or refused it."""


class PublishTimeout(Exception):
    """No acknowledgement before the deadline: the record may or may not be in the log."""

    order_id: str | None = None  # the order whose outcome is unknown, for the log line about it


class Publisher:
    """Publishes events to one topic through one long-lived producer per process."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        send_timeout_s: float = 5.0,
        request_timeout_ms: int = 4000,
        linger_ms: int = 2,
        client_id: str = "oee-ingress",
        reconnect_max_s: float = 5.0,
    ) -> None:
        self.topic = topic
        self._send_timeout = send_timeout_s
        self._reconnect_max = reconnect_max_s
        self.config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()  # set once the first connection attempt ended, either way

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Begin connecting in the background and return at once; a down broker is retried forever."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name="ingress-producer-connect")

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def stop(self) -> None:
        """Stop retrying, flush what is pending and close the producer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _replace(self, dead: AIOKafkaProducer) -> None:
        """The producer's sender task ended (a fatal error such as OutOfOrderSequenceNumber after a broker
        restart): nothing it holds will ever be sent. Drop it and connect a fresh one in the background."""
        if self._producer is not dead:
            return
        log.error("the producer's sender stopped; reconnecting with a new producer")
        self._producer = None
        self._connected.clear()
        self._task = asyncio.create_task(self._reconnect(dead), name="ingress-producer-reconnect")

    async def _reconnect(self, dead: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await dead.stop()
        await self._connect()

    async def _connect(self) -> None:
        delay = 0.1
        while True:
            producer = AIOKafkaProducer(**self.config)
            try:
                await producer.start()
            except asyncio.CancelledError:
                await producer.stop()
                raise
            except Exception as exc:
                await producer.stop()
                log.warning("broker unreachable, retrying in %.1fs: %r", delay, exc)
                self._first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._reconnect_max)
                continue
            self._producer = producer
            self._connected.set()
            self._first_attempt.set()
            log.info("producer connected", extra={"bootstrap": self.config["bootstrap_servers"]})
            return

    async def publish(self, event: Event) -> Position:
        """Write `event` (key = order id, type headers) and wait for acks=all, within the send deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._send_timeout
        producer = self._producer
        if producer is None and not self._first_attempt.is_set():  # still starting: wait for it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._first_attempt.wait()
            producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker")
        if _sender_died(producer):
            self._replace(producer)
            raise BrokerUnavailable("the producer stopped; reconnecting")
        delivery = None  # set once the record is in a batch: from then on its outcome is unknown until acked
        try:
            async with asyncio.timeout_at(deadline):
                delivery = await producer.send(
                    self.topic, encode(event), key=key_for(event), headers=headers_for(event)
                )
                metadata = await delivery
        except TimeoutError:
            if delivery is None:
                raise BrokerUnavailable("no broker metadata or buffer space before the deadline") from None
            raise _unknown(f"no acknowledgement within {self._send_timeout}s", event) from None
        except KafkaError as exc:
            if delivery is not None and isinstance(exc, _UNKNOWN_OUTCOME):
                raise _unknown(f"outcome unknown: {exc!r}", event) from exc
            raise BrokerUnavailable(f"write refused: {exc!r}") from exc
        return Position(metadata.topic, metadata.partition, metadata.offset)

    async def probe(self, timeout_s: float) -> bool:
        """True when the broker answers a metadata request within `timeout_s`."""
        producer = self._producer
        if producer is None:
            return False
        if _sender_died(producer):
            self._replace(producer)
            return False
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await producer.client.force_metadata_update())
        except (TimeoutError, KafkaError, OSError):
            return False


def _unknown(message: str, event: Event) -> PublishTimeout:
    exc = PublishTimeout(message)
    exc.order_id = event.order_id
    return exc


def _sender_died(producer: AIOKafkaProducer) -> bool:
    # aiokafka exposes no public liveness check; a done sender task means every later send would hang.
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()
