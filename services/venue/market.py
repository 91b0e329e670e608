"""The venue's market data: every pool's state after each step of its walk, each swap and each listing,
published to the market-data topic keyed by pair (`events.market`).

- `ticker` steps every pool's random walk every `VENUE_TICK_MS` (the walk is otherwise lazy: a pool moves
  when it is read), so prices move, and are published, whether or not anyone trades.
- `MarketFeed` coalesces: per venue and pool it keeps only the latest change and publishes what changed
  every `VENUE_MARKET_DATA_MS` (100 ms). A pool that moved five times in a window is published once, in its
  latest state; a move that reverted within a window is not seen, as on any real feed that samples. That
  bounds the topic to one event per pool and window whatever the trading rate, and the memory to one entry per pool.
  A listing is never coalesced away: a pool listed in a window is published as `PoolListed` (in its
  latest state).
- `KafkaMarketSink` writes a window's events in one batch (idempotent producer, acks=all). A window that
  cannot be written (broker away) is kept, newer states replacing older ones, and written when it can.

Event ids are derived from the seed, venue, pair and count, so a seeded venue driven by the same clock
publishes the same events (`VENUE_SEED`, tests with a manual clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from events.errors import EventValidationError
from events.market import (
    AnyMarketEvent,
    PoolListed,
    PoolPriced,
    encode_market,
    market_key,
    new_market_event,
)

from .clock import Clock
from .simulator import PoolChange, SimulatedVenue

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("3b8f0c8e-5a61-4c0e-9a57-6f2d1e0b4c21")

Key = tuple[str, str]  # (venue, pair)


class MarketSink(Protocol):
    async def start(self) -> None:
        """Begin connecting (in the background: a broker that is away delays publishing, not the venue)."""
        ...

    async def send(self, events: Sequence[AnyMarketEvent]) -> None:
        """Write every event or raise: the feed keeps them for the next window."""
        ...

    async def stop(self) -> None: ...


class MarketFeed:
    """Pool changes in, one event per changed pool and window out (see the module docstring)."""

    def __init__(self, sink: MarketSink, window_s: float = 0.1, seed: object = 0) -> None:
        self.sink = sink
        self.window_s = window_s
        self.seed = seed
        self._pending: dict[Key, PoolChange] = {}
        self._listed: set[Key] = set()  # keys whose pending change includes a listing
        self._counts: dict[Key, int] = {}
        self.published = 0
        self.failures = 0

    def add(self, change: PoolChange) -> None:
        """Take a venue's change (a `SimulatedVenue.on_market` callback): it replaces the key's older one."""
        key = (change.venue, change.pool.pair)
        self._pending[key] = change
        if change.cause == "listing":
            self._listed.add(key)

    def attach(self, venues: Iterable[SimulatedVenue]) -> list[Callable[[], None]]:
        return [venue.on_market(self.add) for venue in venues]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> list[AnyMarketEvent]:
        """The window's events (and forget them): a `PoolListed` for a key listed in it, else `PoolPriced`."""
        pending, listed = self._pending, self._listed
        self._pending, self._listed = {}, set()
        events: list[AnyMarketEvent] = []
        for key, change in pending.items():
            n = self._counts[key] = self._counts.get(key, 0) + 1
            kind = PoolListed if key in listed else PoolPriced
            try:
                events.append(
                    new_market_event(
                        kind,
                        venue=change.venue,
                        pool=change.pool,
                        cause="listing" if key in listed else change.cause,
                        occurred_at=change.at,
                        event_id=str(uuid.uuid5(_NAMESPACE, f"{self.seed}:{key[0]}:{key[1]}:{n}")),
                    )
                )
            except EventValidationError as exc:  # a pool the contract cannot describe: say so, skip it
                log.error("market event for %s %s not published: %s", key[0], key[1], exc)
        return events

    async def flush(self) -> int:
        """Publish what changed since the last flush; on failure keep it (unless newer came meanwhile)."""
        listed = set(self._listed)
        pending = dict(self._pending)
        events = self.drain()
        if not events:
            return 0
        try:
            await self.sink.send(events)
        except Exception as exc:
            self.failures += 1
            log.warning(
                "market data not published (%r); %d pool states kept for the next window", exc, len(events)
            )
            for key, change in pending.items():
                self._pending.setdefault(key, change)
                if key in listed:
                    self._listed.add(key)
            return 0
        self.published += len(events)
        return len(events)

    async def run(self, clock: Clock) -> None:
        while True:
            await clock.sleep(self.window_s)
            await self.flush()


async def ticker(venues: Sequence[SimulatedVenue], clock: Clock, every_s: float) -> None:
    """Step every venue's pools along their walk every `every_s` seconds, forever."""
    while True:
        await clock.sleep(every_s)
        for venue in venues:
            venue.step_walk()


class KafkaMarketSink:
    """The market-data topic through one idempotent producer that connects in the background."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "oee-venue-market") -> None:
        self.topic = topic
        self._config = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
        }
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name="venue-market-connect")

    async def _connect(self) -> None:
        delay = 0.1
        while True:
            producer = AIOKafkaProducer(**self._config)
            try:
                await producer.start()
            except asyncio.CancelledError:
                await producer.stop()
                raise
            except Exception as exc:
                await producer.stop()
                log.warning("market data: broker unreachable (%r), retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            log.info("market data publishing to %s", self.topic)
            return

    async def send(self, events: Sequence[AnyMarketEvent]) -> None:
        producer = self._producer
        if producer is None:
            raise ConnectionError("not connected to the broker yet")
        futures = [
            await producer.send(
                self.topic,
                encode_market(e),
                key=market_key(e),
                headers=[("type", e.type.encode()), ("schema_version", str(e.schema_version).encode())],
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


async def run_market(
    venues: Sequence[SimulatedVenue], feed: MarketFeed, clock: Clock, tick_s: float
) -> Callable[[], Awaitable[None]]:
    """Start the walk ticker (unless `tick_s` is 0) and the feed's flushes; returns how to stop them."""
    unsubscribe = feed.attach(venues)
    tasks = [asyncio.create_task(feed.run(clock), name="venue-market-feed")]
    if tick_s > 0:
        tasks.append(asyncio.create_task(ticker(venues, clock, tick_s), name="venue-market-ticker"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for off in unsubscribe:
            off()
        await feed.flush()  # what changed last still goes out

    return stop
