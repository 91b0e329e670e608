"""The ingress's one Kafka producer: durable, idempotent, connecting in the background, bounded in time.

`publish` returns only once the broker acknowledged the record with acks=all, and raises a typed error
otherwise: `BrokerUnavailable` when the record was certainly not written (not connected yet, refused, or
never queued), `PublishTimeout` when its fate is unknown (queued but not acknowledged before the deadline;
it may still land in the log). Either way the caller must not tell a client its order was accepted.

The producer is librdkafka's (decision 0016): `produce` only enqueues, and the delivery reports come back to
the event loop from the producer's poll thread, batched, so a request costs no thread hop. librdkafka
reconnects by itself; a *fatal* error (an idempotent producer whose sequence the broker no longer accepts,
say after a broker lost its log) leaves it unusable, so it is then replaced by a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from events.codec import encode, headers_for, key_for
from events.envelope import Event
from services.rdkafka.config import producer_config
from services.rdkafka.producer import AsyncProducer, KafkaDeliveryError

log = logging.getLogger("oee.ingress.publisher")

# Delivery errors after which the record is certainly not in the log: the broker refused it, or it was
# never sent. Any other delivery error (a timeout above all) leaves the outcome unknown.
_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._PURGE_QUEUE,
    }
)


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
        self.config: dict[str, Any] = producer_config(
            bootstrap_servers,
            client_id,
            **{
                "linger.ms": linger_ms,
                "request.timeout.ms": request_timeout_ms,
                # librdkafka gives a record up after this (it then reports it failed): no later than our
                # deadline, so a record we answered 503 for is not still being retried a minute later.
                "message.timeout.ms": max(int(send_timeout_s * 1000), linger_ms + 1),
                "reconnect.backoff.max.ms": int(reconnect_max_s * 1000),
                # Only this topic's metadata, refreshed every 5 min (the default asks for it every 5 min too,
                # and for all topics on some errors): it is all this producer writes to.
                "topic.metadata.refresh.sparse": True,
            },
        )
        self._producer: AsyncProducer | None = None
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
            await producer.close()

    def _replace(self, dead: AsyncProducer) -> None:
        """librdkafka reported a fatal error: nothing this producer holds will ever be sent. Drop it and
        connect a fresh one in the background."""
        if self._producer is not dead:
            return
        log.error("the producer failed fatally (%s); reconnecting with a new producer", dead.fatal)
        self._producer = None
        self._connected.clear()
        self._task = asyncio.create_task(self._reconnect(dead), name="ingress-producer-reconnect")

    async def _reconnect(self, dead: AsyncProducer) -> None:
        with contextlib.suppress(Exception):
            await dead.close(timeout_s=0)
        await self._connect()

    async def _connect(self) -> None:
        delay = 0.1
        producer = AsyncProducer(self.config, name="ingress")
        try:
            while True:
                try:
                    await producer.call(self._metadata, producer, 2.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("broker unreachable, retrying in %.1fs: %r", delay, exc)
                    self._first_attempt.set()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                break
        except BaseException:
            await producer.close(timeout_s=0)
            raise
        producer.on_error(lambda err: self._replace(producer) if err.fatal() else None)
        self._producer = producer
        self._connected.set()
        self._first_attempt.set()
        log.info("producer connected", extra={"bootstrap": self.config["bootstrap.servers"]})

    def _metadata(self, producer: AsyncProducer, timeout_s: float) -> None:
        """The topic's metadata from the broker (blocking): proves the broker answers and the topic exists."""
        found = producer.producer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        if found is None or found.error is not None:
            raise KafkaException(found.error if found is not None else KafkaError(KafkaError._UNKNOWN_TOPIC))

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
        if producer.fatal is not None:
            self._replace(producer)
            raise BrokerUnavailable("the producer failed; reconnecting")
        try:
            delivery = producer.produce(self.topic, encode(event), key_for(event), headers=headers_for(event))
        except (BufferError, KafkaException) as exc:  # not queued: certainly not written
            raise BrokerUnavailable(f"write refused: {exc!r}") from exc
        try:
            async with asyncio.timeout_at(deadline):
                msg = await delivery
        except TimeoutError:
            raise _unknown(f"no acknowledgement within {self._send_timeout}s", event) from None
        except KafkaDeliveryError as exc:
            if exc.error.code() in _REFUSED:
                raise BrokerUnavailable(f"write refused: {exc.error.str()}") from exc
            if exc.error.fatal():
                self._replace(producer)
            raise _unknown(f"outcome unknown: {exc.error.str()}", event) from exc
        return Position(self.topic, msg.partition() or 0, msg.offset() or 0)

    async def probe(self, timeout_s: float) -> bool:
        """True when the broker answers a metadata request within `timeout_s`."""
        producer = self._producer
        if producer is None:
            return False
        if producer.fatal is not None:
            self._replace(producer)
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await producer.call(self._metadata, producer, timeout_s)
            return True
        except (TimeoutError, KafkaException, OSError):
            return False


def _unknown(message: str, event: Event) -> PublishTimeout:
    exc = PublishTimeout(message)
    exc.order_id = event.order_id
    return exc
