"""Static group membership (decision 0029) with `oee projector` subprocesses on the real broker: a SIGKILLed
projector restarted with the same instance id takes its partitions back at once, without a rebalance and
without waiting out the dead member's 10 s session; a second live process with the same id fences the
older one, which stops with one line instead of taking the id back."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from events.topics import Topics
from services.config import Settings
from tests.e2e.harness import Proc, service
from tests.e2e.test_projector import _orders
from tests.projection_fixtures import log_end, positions, produce, settings_for, wait_caught_up, wait_until

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT_S = 10.0  # the projector's consumer session and heartbeat (projections/projector.py)
HEARTBEAT_S = 1.0


def projector(settings: Settings, schema: str, tmp: Path, instance_id: str) -> Proc:
    env = {
        "PROJECTION_SCHEMA": schema,
        "PROJECTOR_POLL_MS": "100",
        "PROJECTOR_HEARTBEAT_MS": "200",
        "PROJECTOR_INSTANCE_ID": instance_id,
        "PROJECTOR_METRICS_PORT": "0",
    }
    return service("projector", settings, tmp, env).start()


async def test_a_sigkilled_projector_restarted_with_its_id_takes_its_partitions_back_at_once(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = settings_for(infra, topics)
    member = f"projector.{uuid.uuid4().hex[:8]}"
    await produce(infra.bootstrap_servers, topics.events, _orders(50))
    first = projector(settings, schema, tmp_path, member)
    try:
        await wait_caught_up(
            db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events), 120, first.tail
        )
        stored = sum((await positions(db, schema, topics.events)).values())
        first.kill(signal.SIGKILL)  # its last heartbeat was at most 1 s ago: its session ends 9-10 s from now
        killed_at = time.monotonic()
        await produce(infra.bootstrap_servers, topics.events, _orders(50))
        second = projector(settings, schema, tmp_path, member)

        async def progressed() -> bool:
            return sum((await positions(db, schema, topics.events)).values()) > stored

        await wait_until(progressed, 60, "the restarted projector's first batch", second.tail)
        elapsed = time.monotonic() - killed_at
        print(
            f"\nSIGKILL to the restarted projector's first batch: {elapsed:.2f} s (session {SESSION_TIMEOUT_S:.0f} s)"
        )
        await wait_caught_up(
            db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events), 120, second.tail
        )
        # A dynamic member joining while the dead one is still in the group waits in the rebalance until that
        # session expires, 9-10 s after the kill. The static one is swapped in for the dead member at once:
        # what is left is the restart itself (interpreter, migrations check, broker connection).
        deadline = SESSION_TIMEOUT_S - HEARTBEAT_S
        assert elapsed < deadline, f"{elapsed:.1f} s: waited out the dead member's session?\n{second.tail()}"
    finally:
        first.stop()
        if "second" in locals():
            second.stop()


async def test_a_second_live_process_with_the_same_id_fences_one_which_stops_with_one_line(
    infra: Settings, topics: Topics, schema: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = settings_for(infra, topics)
    member = f"projector.{uuid.uuid4().hex[:8]}"
    await produce(infra.bootstrap_servers, topics.events, _orders(20))
    older = projector(settings, schema, tmp_path, member)
    newer: Proc | None = None
    try:
        await wait_caught_up(
            db, schema, topics.events, await log_end(infra.bootstrap_servers, topics.events), 120, older.tail
        )
        newer = projector(settings, schema, tmp_path, member)
        procs = (older, newer)

        async def one_stopped() -> bool:
            return any(not p.alive() for p in procs)

        await wait_until(one_stopped, 60, "one of the two to be fenced", lambda: older.tail() + newer.tail())
        fenced = next(p for p in procs if not p.alive())
        survivor = newer if fenced is older else older
        assert fenced.popen is not None and fenced.popen.returncode == 1, fenced.tail()
        lines = [line for line in fenced.tail(200).splitlines() if "fenced: another process" in line]
        assert len(lines) == 1, fenced.tail()
        assert f"instance id '{member}'" in lines[0] and "PROJECTOR_INSTANCE_ID" in lines[0]
        # No ping-pong: the survivor keeps the partitions and goes on projecting.
        await produce(infra.bootstrap_servers, topics.events, _orders(20))
        await wait_caught_up(
            db,
            schema,
            topics.events,
            await log_end(infra.bootstrap_servers, topics.events),
            60,
            survivor.tail,
        )
        assert survivor.alive(), survivor.tail()
        print(f"\nfenced: the {'older' if fenced is older else 'newer'} process")
    finally:
        older.stop()
        if newer is not None:
            newer.stop()
