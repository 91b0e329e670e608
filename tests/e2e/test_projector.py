"""`oee projector` as a subprocess, killed with SIGKILL in the middle of its work and restarted: the tables
always end equal to a pure fold of the log (P8: nothing lost, nothing applied twice)."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import asyncpg
import pytest

from events.topics import Topics
from projections import migrations
from services.config import Settings
from tests.e2e.harness import Proc, service
from tests.projection_fixtures import (
    dump_all,
    log_end,
    positions,
    produce,
    read_log,
    reference_replay,
    settings_for,
    wait_caught_up,
    wait_until,
)
from tests.samples import lifecycle_events

pytestmark = pytest.mark.e2e


def projector(settings: Settings, schema: str, tmp: Path, **env: str) -> Proc:
    extra = {"PROJECTION_SCHEMA": schema, "PROJECTOR_POLL_MS": "100", "PROJECTOR_HEARTBEAT_MS": "200"}
    extra.update({k.upper(): v for k, v in env.items()})
    return service("projector", settings, tmp, extra).start()


async def expected(conn: asyncpg.Connection, bootstrap: str, topic: str) -> dict[str, list[str]]:
    scratch = f"r_{uuid.uuid4().hex[:10]}"
    await migrations.apply(conn, scratch)
    try:
        await reference_replay(
            conn, scratch, topic, await read_log(bootstrap, topic), await log_end(bootstrap, topic)
        )
        return await dump_all(conn, scratch)
    finally:
        await conn.execute(f'DROP SCHEMA "{scratch}" CASCADE')


def _orders(n: int) -> list:  # type: ignore[type-arg]
    orders = [lifecycle_events(failed=i % 5 == 0) for i in range(n)]
    return [e for step in zip(*orders, strict=True) for e in step]


async def test_sigkill_mid_stream_then_restart_equals_a_pure_fold(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = settings_for(infra, topics)
    await produce(infra.bootstrap_servers, topics.events, _orders(600))  # 3,000 events
    ends = await log_end(infra.bootstrap_servers, topics.events)
    total = sum(ends.values())
    proc = projector(settings, schema, tmp_path, projector_batch_max="40")
    try:
        for fraction in (0.2, 0.5, 0.8):

            async def past(mark: float = fraction) -> bool:
                return sum((await positions(db, schema, topics.events)).values()) >= mark * total

            await wait_until(past, 120, f"{fraction:.0%} of the log projected", proc.tail)
            proc.kill(signal.SIGKILL)
            assert proc.popen is not None and proc.popen.returncode == -signal.SIGKILL
            proc = projector(settings, schema, tmp_path, projector_batch_max="40")
        await wait_caught_up(db, schema, topics.events, ends, timeout=180, on_fail=proc.tail)
    finally:
        proc.stop()
    assert await dump_all(db, schema) == await expected(db, infra.bootstrap_servers, topics.events)


@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
async def test_killed_just_before_or_after_a_commit(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, tmp_path: Path, where: str
) -> None:
    settings = settings_for(infra, topics)
    await produce(infra.bootstrap_servers, topics.events, _orders(100))
    ends = await log_end(infra.bootstrap_servers, topics.events)
    doomed = projector(settings, schema, tmp_path, projector_batch_max="20", projector_failpoint=f"{where}:3")
    assert doomed.popen is not None
    doomed.popen.wait(timeout=120)
    assert doomed.popen.returncode == -signal.SIGKILL, doomed.tail()
    assert f"failpoint {where}:3" in doomed.tail()
    stored = await positions(db, schema, topics.events)
    applied = await db.fetchval(f'SELECT count(*) FROM "{schema}".order_events')
    assert applied > 0, "two batches committed before the kill"
    proc = projector(settings, schema, tmp_path, projector_batch_max="20")
    try:
        await wait_caught_up(db, schema, topics.events, ends, timeout=120, on_fail=proc.tail)
    finally:
        proc.stop()
    assert sum(stored.values()) < sum(ends.values())
    assert await dump_all(db, schema) == await expected(db, infra.bootstrap_servers, topics.events)
