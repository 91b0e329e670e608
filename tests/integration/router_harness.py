"""A RouterCore on the real broker (and, where asked, the real PostgreSQL), driven batch by batch without
Faust, over in-process simulated venues behind a switchable fault (`tests.router_fakes.FaultyVenue`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from aiokafka import AIOKafkaProducer

from events.codec import encode
from events.topics import Topics
from events.types import OrderRequested
from services.config import Settings
from services.router.admission import Admissions, InMemoryAdmissions
from services.router.core import RouterCore
from services.router.options import RouterOptions
from services.router.partitions import ProducerFactory
from services.router.worker import Record
from services.venue.config import VENUE_SPECS
from services.venue.interface import Venue
from services.venue.simulator import SimulatedVenue
from tests.router_fakes import FaultyVenue

TOKENS = ("SOL", "USDC", "ETH", "USDT")


def sim_venues(latency: float | tuple[float, float] = 0.0, seed: int = 5) -> dict[str, FaultyVenue]:
    made = {}
    for name, spec in VENUE_SPECS.items():
        inner = SimulatedVenue(name, spec, TOKENS, seed=seed, execution_latency_s=latency)
        inner.start()
        made[name] = FaultyVenue(inner)
    return made


@contextlib.asynccontextmanager
async def running(
    infra: Settings,
    topics: Topics,
    venues: Mapping[str, FaultyVenue],
    options: RouterOptions,
    admissions: Admissions | None = None,
    partitions: frozenset[int] = frozenset({0, 1, 2}),
    producer_factory: ProducerFactory | None = None,
) -> AsyncIterator[RouterCore]:
    """A core owning `partitions`, its settlements from the venues' in-process callbacks."""
    as_venues: dict[str, Venue] = dict(venues)  # type: ignore[arg-type]  # FaultyVenue is a Venue
    core = RouterCore(
        infra.bootstrap_servers,
        topics,
        topics.router_state,
        f"{topics.requests}.group",
        as_venues,
        options,
        producer_factory,
        admissions=admissions if admissions is not None else InMemoryAdmissions(),
    )
    unsubscribe = [v.on_settled(core.on_settlement) for v in venues.values()]
    await core.start()
    await core.assign(set(partitions))
    try:
        yield core
    finally:
        await core.stop()
        for off in unsubscribe:
            off()


async def intake(infra: Settings, topics: Topics, items: list[tuple[int, OrderRequested]]) -> list[Record]:
    """Write requests to the intake (partition, request); the records as the agent would hand them over."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topics.requests, encode(o), key=o.order_id.encode(), partition=p)
            for p, o in items
        ]
        sent = [await f for f in futures]
    finally:
        await producer.stop()
    return [
        Record(p, meta.offset, encode(o), o.order_id.encode())
        for meta, (p, o) in zip(sent, items, strict=True)
    ]


async def close_venues(venues: Mapping[str, FaultyVenue]) -> None:
    for venue in venues.values():
        await venue.aclose()
