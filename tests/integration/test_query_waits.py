"""Read-your-writes waits under load, against a real projection schema: hundreds of waiting reads cost one
query per wake-up (not one each), their number is bounded (503 past it), and a pool with no connection free
answers 503 in time instead of queueing the read for ever."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from events.topics import Topics
from projections.settings import NOTIFY_CHANNEL
from services import query
from services.config import Settings
from services.query.options import QueryOptions
from services.query.reads import Reads
from services.query.waits import Progress, Target, reached
from tests.api_harness import api_app, served
from tests.integration.test_query_api import cancelled_at_seq_3, order_at, write
from tests.projection_fixtures import settings_for
from tests.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(infra: Settings, topics: Topics) -> Settings:
    return settings_for(infra, topics)


@contextlib.asynccontextmanager
async def api(
    settings: Settings, schema: str, options: QueryOptions, pool_max: int = 8
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    reads = query.part(settings, schema=schema, pool_max=pool_max, options=options)
    app = api_app(settings, ingress_part=False, more=[reads], schema=schema)
    async with served(app) as client:
        client.timeout = httpx.Timeout(60)
        yield client, app


async def notify(db: asyncpg.Connection, schema: str) -> None:
    """What the projector sends at each commit."""
    await db.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, orjson.dumps({"schema": schema}).decode())


def counting_queries(reads: Reads) -> Counter[str]:
    """Count the read API's queries from now on (each `Reads` method is one statement, or two)."""
    count: Counter[str] = Counter()
    for name in ("order", "position", "progress", "events"):
        method = getattr(reads, name)

        def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
            count[_name] += 1
            return _method(*args)

        setattr(reads, name, counted)
    return count


def test_a_target_is_reached_by_seq_and_by_position() -> None:
    seen = Progress(seqs={"a": 3}, positions={0: 10})
    assert reached(Target("a", min_seq=3), seen) and not reached(Target("a", min_seq=4), seen)
    assert not reached(Target("b", min_seq=1), seen)  # no row yet
    assert reached(Target("b", min_position=(0, 9)), seen) and not reached(
        Target("b", min_position=(0, 10)), seen
    )
    assert not reached(Target("a", min_seq=3, min_position=(1, 0)), seen)  # both must hold
    ended = Progress(seqs={"a": 3, "b": 2}, positions={0: 10}, ended=frozenset({"a"}))
    assert reached(Target("a", min_seq=4), ended), "an ended order will never get further: answer it"
    assert not reached(Target("b", min_seq=4), ended) and not reached(Target("c", min_seq=4), ended)
    assert not reached(Target("a", min_seq=4, min_position=(0, 10)), ended)  # the position still must hold


async def test_a_read_waiting_past_where_the_order_ends_is_answered_when_it_ends(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = cancelled_at_seq_3()
    oid = events[0].order_id
    await write(db, schema, topics.events, [events[:2]])
    async with api(settings, schema, QueryOptions()) as (client, app):
        ctx = app.state.query
        reader = asyncio.create_task(client.get(f"/api/orders/{oid}?minSeq=6&waitMs=10000"))
        await until(lambda: ctx.waiter.waiting == 1, 20, "the read waiting")
        async with db.transaction():  # (rewritten whole: `write` folds from the first event)
            await db.execute(f'DELETE FROM "{schema}".order_events WHERE order_id = $1', oid)
            await db.execute(f'DELETE FROM "{schema}".orders WHERE id = $1', oid)
        await write(db, schema, topics.events, [events])
        started = time.monotonic()
        await notify(db, schema)
        r = await asyncio.wait_for(reader, 20)
        took = time.monotonic() - started
    assert r.status_code == 200 and (r.json()["status"], r.json()["lastSeq"]) == ("cancelled", 3), r.text
    assert took < 5.0, f"released by the check that saw it end, not at the deadline: {took:.2f} s"


async def test_waiting_reads_cost_one_query_per_wake_up_not_one_each(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = order_at(0)
    await write(db, schema, topics.events, [events[:3]])
    oid = events[0].order_id
    async with api(settings, schema, QueryOptions(max_waiters=1000)) as (client, app):
        ctx = app.state.query
        mine = [
            asyncio.create_task(client.get(f"/api/orders/{oid}?minSeq=5&waitMs=10000")) for _ in range(100)
        ]
        ghosts = [
            asyncio.create_task(client.get(f"/api/orders/{uuid.uuid4()}?minSeq=1&waitMs=10000"))
            for _ in range(100)
        ]
        await until(lambda: ctx.waiter.waiting == 200, 20, "200 waiting reads")
        queries = counting_queries(ctx.reads)
        checks = ctx.waiter.checks
        started = time.monotonic()
        for _ in range(20):  # 20 commits of other orders: each wakes the waiters, none is reached
            before = ctx.waiter.checks
            await notify(db, schema)
            await until(lambda b=before: ctx.waiter.checks > b, 10, "a check after the notification")
        polls = (time.monotonic() - started) / ctx.waiter.poll_s + 2
        assert ctx.waiter.waiting == 200
        # One shared progress query per wake-up (notification or poll), no read of its own by any waiter.
        # (A check under way when counting began shows in `checks` only.)
        assert queries["progress"] <= ctx.waiter.checks - checks <= 20 + polls + 1, (queries, polls)
        assert queries["order"] == queries["position"] == 0, queries

        # The order's last events land: its 100 readers answer (a query each), the others keep waiting.
        async with db.transaction():  # (rewritten whole: `write` folds from the first event)
            await db.execute(f'DELETE FROM "{schema}".order_events WHERE order_id = $1', oid)
            await db.execute(f'DELETE FROM "{schema}".orders WHERE id = $1', oid)
        await write(db, schema, topics.events, [events])
        await notify(db, schema)
        answers = await asyncio.wait_for(asyncio.gather(*mine), 20)
        assert {(r.status_code, r.json()["lastSeq"]) for r in answers} == {(200, 5)}
        assert ctx.waiter.waiting == 100 and not any(t.done() for t in ghosts)
        for task in ghosts:
            task.cancel()
        await asyncio.gather(*ghosts, return_exceptions=True)


async def test_waiting_reads_are_bounded(
    settings: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    events = order_at(0)
    oid = events[0].order_id
    async with api(settings, schema, QueryOptions(max_waiters=5)) as (client, app):
        ctx = app.state.query
        waiting = [asyncio.create_task(client.get(f"/api/orders/{oid}?minSeq=1&waitMs=10000"))]
        waiting += [
            asyncio.create_task(client.get(f"/api/orders/{uuid.uuid4()}?minSeq=1&waitMs=10000"))
            for _ in range(4)
        ]
        await until(lambda: ctx.waiter.waiting == 5, 20, "5 waiting reads")
        started = time.monotonic()
        refused = await client.get(f"/api/orders/{uuid.uuid4()}?minSeq=1&waitMs=10000")
        assert time.monotonic() - started < 2.0, "refused at once, not after waiting"
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "too many reads waiting for the projection (limit 5)" in refused.json()["error"]
        plain = await client.get(f"/api/orders/{uuid.uuid4()}")  # a read that does not wait is not refused
        assert plain.status_code == 404
        # Already there: answered at once, without waiting (nor counting as a waiter).
        await write(db, schema, topics.events, [events])
        ready = await client.get(f"/api/orders/{oid}?minSeq=1&waitMs=10000")
        assert ready.status_code == 200
        await notify(db, schema)
        first = await asyncio.wait_for(waiting[0], 20)
        assert first.status_code == 200 and first.json()["lastSeq"] == 5
        assert ctx.waiter.refused == 1
        for task in waiting[1:]:
            task.cancel()
        await asyncio.gather(*waiting[1:], return_exceptions=True)


async def test_a_pool_with_no_connection_free_answers_503_in_time(settings: Settings, schema: str) -> None:
    async with api(settings, schema, QueryOptions(acquire_timeout_s=0.3), pool_max=1) as (client, app):
        async with app.state.query.pool.acquire():  # the only connection, held
            started = time.monotonic()
            r = await client.get(f"/api/orders/{uuid.uuid4()}")
            elapsed = time.monotonic() - started
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert 0.25 < elapsed < 3.0, elapsed
        assert (await client.get(f"/api/orders/{uuid.uuid4()}")).status_code == 404  # and free again
