"""`oee rebuild` as an operator runs it, against a projection the real pipeline built (`oee venue`, `oee router`,
`oee projector` as subprocesses): byte-equal replay, verify-and-swap under load with no dip, point in time."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from msgspec.structs import replace

from events.envelope import Event
from events.lifecycle import OrderState
from events.topics import Topics
from projections.fold import decode_records, fold
from services.config import Settings
from tests.e2e.harness import Proc, free_port, order_request, service, stop_all, wait_http, wait_log
from tests.projection_fixtures import (
    dump_all,
    log_end,
    produce,
    read_log,
    settings_for,
    wait_caught_up,
    wait_until,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    topics: Topics
    schema: str
    procs: list[Proc]

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.procs)


@pytest.fixture
async def pipeline(infra: Settings, topics: Topics, schema: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    settings = settings_for(infra, topics)
    port = free_port()
    env = {"VENUE_PORT": str(port), "VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": "20-80"}
    venue = service("venue", settings, tmp_path, env).start()
    router = service("router", settings, tmp_path, dict(env, VENUE_URL=f"http://127.0.0.1:{port}")).start()
    projector = service(
        "projector", settings, tmp_path, {"PROJECTION_SCHEMA": schema, "PROJECTOR_POLL_MS": "100"}
    ).start()
    procs = [venue, router, projector]
    try:
        await wait_http(f"http://127.0.0.1:{port}/health", venue)
        await wait_log(router, "partition assigned", count=3)
        await wait_log(projector, "partition assigned")
        yield Pipeline(settings, topics, schema, procs)
    finally:
        stop_all(procs)


def rebuild(p: Pipeline, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=p.settings.bootstrap_servers,
        DATABASE_URL=p.settings.database_url,
        OEE_TOPIC_PREFIX=p.settings.topic_prefix,
        PROJECTION_SCHEMA=p.schema,
    )
    argv = [sys.executable, "-m", "services.cli", "rebuild", *args]
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


async def terminal_count(conn: asyncpg.Connection, schema: str) -> int:
    return await conn.fetchval(
        f"SELECT count(*) FROM \"{schema}\".orders WHERE status IN ('confirmed', 'failed')"
    )


async def run_orders(p: Pipeline, conn: asyncpg.Connection, n: int) -> None:
    """Send n orders through the intake and wait until the projection shows them all terminal."""
    before = await terminal_count(conn, p.schema)
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 7) for i in range(n)]
    await produce(p.settings.bootstrap_servers, p.topics.requests, orders)

    async def done() -> bool:
        return await terminal_count(conn, p.schema) >= before + n

    await wait_until(done, 240, f"{n} orders projected terminal", p.tails)
    await wait_caught_up(
        conn, p.schema, p.topics.events, await log_end(p.settings.bootstrap_servers, p.topics.events)
    )


def infra_bootstrap(p: Pipeline) -> str:
    return p.settings.bootstrap_servers


async def drop(conn: asyncpg.Connection, *schemas: str) -> None:
    for name in schemas:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_a_replay_equals_the_live_projection_byte_for_byte(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await run_orders(pipeline, db, 300)
    live = await dump_all(db, pipeline.schema)
    assert len(live["orders"]) == 300 and len(live["order_events"]) >= 900
    first, second = f"i1_{uuid.uuid4().hex[:8]}", f"i2_{uuid.uuid4().hex[:8]}"
    try:
        for name in (first, second):
            out = rebuild(pipeline, "--schema", name)
            assert out.returncode == 0, out.stderr + out.stdout
            assert f"into {name}" in out.stdout
        assert await dump_all(db, first) == live, "a full replay gives the live rows, byte for byte"
        assert await dump_all(db, second) == live, "and so does a second one"
    finally:
        await drop(db, first, second)

    dry = rebuild(pipeline, "--dry-run")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "identical to live" in dry.stdout and "checksum DIFFERENT" not in dry.stdout

    swap = rebuild(pipeline)
    assert swap.returncode == 0, swap.stderr + swap.stdout
    assert "swapped in" in swap.stdout
    assert await dump_all(db, pipeline.schema) == live
    rebuilt = swap.stdout.split("into ", 1)[1].split(":", 1)[0]
    assert not await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", rebuilt), (
        "cleaned up"
    )

    # The live projector carries on in the swapped-in tables.
    await run_orders(pipeline, db, 20)
    assert len((await dump_all(db, pipeline.schema))["orders"]) == 320


async def test_a_dry_run_reports_what_differs_and_swaps_nothing(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await run_orders(pipeline, db, 30)
    victim = await db.fetchval(f'SELECT id FROM "{pipeline.schema}".orders LIMIT 1')
    await db.execute(
        f"UPDATE \"{pipeline.schema}\".orders SET last_seq = 2, status = 'routing' WHERE id = $1", victim
    )
    damaged = await dump_all(db, pipeline.schema)
    dry = rebuild(pipeline, "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "DIFFERS from live" in dry.stdout and str(victim) in dry.stdout
    assert "orders whose last seq differs: 1" in dry.stdout
    refused = rebuild(pipeline)
    assert refused.returncode == 1 and "NOT swapped" in refused.stdout
    assert await dump_all(db, pipeline.schema) == damaged
    repaired = rebuild(pipeline, "--force")
    assert repaired.returncode == 0 and "swapped in" in repaired.stdout, repaired.stdout + repaired.stderr
    status = await db.fetchval(f'SELECT status FROM "{pipeline.schema}".orders WHERE id = $1', victim)
    assert status in ("confirmed", "failed")


async def test_swap_under_load_readers_never_see_a_dip(pipeline: Pipeline, db: asyncpg.Connection) -> None:
    await run_orders(pipeline, db, 200)
    seen = {"reads": 0, "sent": 0}
    dips: list[str] = []
    stop = asyncio.Event()

    async def reader() -> None:
        conn = await asyncpg.connect(pipeline.settings.database_url)
        try:
            last_count, last_seq = 0, 0
            while not stop.is_set():
                count = await conn.fetchval(f'SELECT count(*) FROM "{pipeline.schema}".orders')
                total = await conn.fetchval(
                    f'SELECT coalesce(sum(last_seq), 0) FROM "{pipeline.schema}".orders'
                )
                if count < last_count or total < last_seq:
                    dips.append(f"orders {last_count} -> {count}, seq sum {last_seq} -> {total}")
                last_count, last_seq = count, total
                seen["reads"] += 1
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def load() -> None:
        while not stop.is_set():
            await produce(pipeline.settings.bootstrap_servers, pipeline.topics.requests,
                          [order_request() for _ in range(10)])  # fmt: skip
            seen["sent"] += 10
            await asyncio.sleep(0.1)

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    writer = asyncio.create_task(load())
    try:
        out = await asyncio.to_thread(rebuild, pipeline, "--force")
    finally:
        stop.set()
        await asyncio.gather(*readers, writer)
    assert out.returncode == 0 and "swapped in" in out.stdout, out.stdout + out.stderr
    assert dips == [], dips
    assert seen["reads"] > 10
    # Quiesce (every order sent is terminal), then the swapped-in projection still equals a fresh replay.
    sent = 200 + seen["sent"]

    async def quiet() -> bool:
        return await terminal_count(db, pipeline.schema) >= sent

    await wait_until(quiet, 240, f"all {sent} orders terminal", pipeline.tails)
    await wait_caught_up(
        db,
        pipeline.schema,
        pipeline.topics.events,
        await log_end(infra_bootstrap(pipeline), pipeline.topics.events),
    )
    check = f"c_{uuid.uuid4().hex[:8]}"
    try:
        assert rebuild(pipeline, "--schema", check).returncode == 0
        assert await dump_all(db, check) == await dump_all(db, pipeline.schema)
    finally:
        await drop(db, check)


def _at(events: list[Event], t0: datetime) -> list[Event]:
    """The lifecycle restamped to start at t0, exactly one minute per step (history with known times).

    Exact instants, not the generated ones shifted: those carry microseconds, and a lifecycle generated across
    a second boundary would land a step a fraction of a second after its minute, past a `--until` set on it.
    """
    return [replace(e, occurred_at=t0 + timedelta(minutes=i)) for i, e in enumerate(events)]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def test_point_in_time_replay_into_its_own_schema(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    early = _at(lifecycle_events(), t0)  # done by t0+4min
    mid = _at(lifecycle_events(failed=True), t0 + timedelta(minutes=2))  # submitted at t0+5min
    late = _at(lifecycle_events(), t0 + timedelta(minutes=30))  # not yet created
    until = t0 + timedelta(minutes=5)
    # Records that do not decode have no occurred_at: their log timestamp says whether they are in.
    bad_before = (b"bad", b"bad before", _ms(until - timedelta(minutes=1)))
    bad_after = (b"bad", b"bad after", _ms(until + timedelta(minutes=1)))  # (read: within the slack)
    log = [*early[:3], *mid[:2], bad_before, *early[3:], *mid[2:], bad_after, *late]
    await produce(infra.bootstrap_servers, topics.events, log, stamped=True)
    settings = settings_for(infra, topics)
    pipeline = Pipeline(settings, topics, schema, [])
    pit = f"pit_{uuid.uuid4().hex[:8]}"
    try:
        started = time.monotonic()
        out = rebuild(pipeline, "--until", until.isoformat().replace("+00:00", "Z"), "--schema", pit)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "after the point in time" in out.stdout and time.monotonic() - started < 120
        rows = {str(r["id"]): r for r in await db.fetch(f'SELECT id, status, last_seq FROM "{pit}".orders')}
        assert set(rows) == {early[0].order_id, mid[0].order_id}
        assert (rows[early[0].order_id]["status"], rows[early[0].order_id]["last_seq"]) == ("confirmed", 5)
        assert (rows[mid[0].order_id]["status"], rows[mid[0].order_id]["last_seq"]) == ("submitted", 4)
        # Exactly the fold of the events up to that instant.
        decoded, _ = decode_records(await read_log(infra.bootstrap_servers, topics.events))
        states: dict[str, OrderState] = {}
        fold(decoded, states, until=until)
        assert {oid: s.last_seq for oid, s in states.items()} == {k: r["last_seq"] for k, r in rows.items()}
        dead = await db.fetch(f'SELECT raw FROM "{pit}".projector_dead_letters')
        assert [bytes(r["raw"]) for r in dead] == [b"bad before"], "a dead letter written after T is left out"
        # The live schema was not touched.
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".orders') == 0
    finally:
        await drop(db, pit)
