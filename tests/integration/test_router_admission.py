"""The durable record of admitted order ids in the real PostgreSQL: its verdicts, and failing closed. The
database is taken away from the router alone through a TCP proxy (the shared one keeps running)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit, urlunsplit

import pytest

from events.topics import Topics
from services.config import Settings
from services.router.admission import Candidate, PgAdmissions
from services.router.options import RouterOptions
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.integration.router_harness import close_venues, intake, running, sim_venues
from tests.samples import order_request
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def ids(admitted: Iterable[Candidate]) -> set[str]:
    return {c.order_id for c in admitted}


@pytest.fixture
async def proxy(infra: Settings) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database, and a database URL through it."""
    url = urlsplit(infra.database_url)
    tcp = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    userinfo = url.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{tcp.port}" if userinfo else f"127.0.0.1:{tcp.port}"
    through = urlunsplit(url._replace(netloc=netloc))
    yield tcp, through
    await tcp.aclose()


async def test_new_ids_and_re_reads_are_admitted_other_requests_for_an_id_are_not(infra: Settings) -> None:
    store = PgAdmissions(infra.database_url)
    scope = f"test-{uuid.uuid4().hex[:8]}"
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert ids(await store.admit(scope, [Candidate(a, 0, 10), Candidate(b, 1, 11)])) == {a, b}
        assert ids(await store.admit(scope, [Candidate(a, 0, 10)])) == {a}  # the same record, read again
        assert ids(await store.admit(scope, [Candidate(a, 0, 12), Candidate(b, 2, 11)])) == set()
        assert ids(await store.admit(f"{scope}-other", [Candidate(a, 0, 12)])) == {a}  # another intake topic
        c = str(uuid.uuid4())  # one id under two keys, so in two partitions of one batch: the first starts
        assert await store.admit(scope, [Candidate(c, 0, 13), Candidate(c, 1, 13)]) == {Candidate(c, 0, 13)}
        assert ids(await store.admit(scope, [Candidate(c, 1, 13)])) == set()
    finally:
        await store.aclose()


async def test_admission_waits_while_the_database_is_away_and_carries_on_when_it_is_back(
    proxy: tuple[TcpProxy, str],
) -> None:
    tcp, url = proxy
    store = PgAdmissions(url, backoff_s=(0.05, 0.2))
    scope = f"test-{uuid.uuid4().hex[:8]}"
    order_id = str(uuid.uuid4())
    try:
        await store.prepare()
        await tcp.cut()
        admitting = asyncio.create_task(store.admit(scope, [Candidate(order_id, 0, 1)]))
        done, _ = await asyncio.wait([admitting], timeout=1.5)
        assert not done, "nothing is admitted unchecked while the database is away"
        await tcp.resume()
        assert ids(await asyncio.wait_for(admitting, 15)) == {order_id}
    finally:
        await store.aclose()


async def test_with_the_database_away_new_orders_wait_and_settlements_still_flow(
    infra: Settings, topics: Topics, proxy: tuple[TcpProxy, str]
) -> None:
    tcp, url = proxy
    venues = sim_venues(latency=1.5)
    options = RouterOptions(quote_timeout_s=1.0, reconcile_every_s=0.1)
    early, late = order_request(), order_request()
    try:
        async with (
            running(infra, topics, venues, options, PgAdmissions(url, backoff_s=(0.05, 0.2))) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(await intake(infra, topics, [(0, early)]))
            await log.wait_for(
                lambda r: [e.type for e in r.by_order.get(early.order_id, [])][-1:] == ["OrderSubmitted"],
                30,
                "the early order submitted",
            )
            await tcp.cut()
            records = await intake(infra, topics, [(0, late)])
            handling = asyncio.create_task(core.handle(records))
            await log.wait_terminal([early.order_id], 30)  # its settlement committed meanwhile
            assert late.order_id not in log.by_order and not handling.done()
            await tcp.resume()
            await asyncio.wait_for(handling, 30)
            await log.wait_terminal([late.order_id], 30)
            for order in (early, late):
                assert_lifecycle(log.by_order[order.order_id])
    finally:
        await close_venues(venues)
