"""Static group membership (decision 0029) with `oee projector` and `oee router` subprocesses on the real
broker: a SIGKILLed projector restarted with the same instance id takes its partitions back at once, without
a rebalance and without waiting out the dead member's 10 s session; one stopped gracefully leaves the group,
so the other members get its partitions at once; a second live process with the same id fences the older
one, which stops with one line instead of taking the id back."""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from events.topics import Topics
from projections.projector import group_id
from services.config import Settings
from tests.e2e.harness import Proc, service, wait_log
from tests.e2e.test_projector import _orders
from tests.projection_fixtures import log_end, positions, produce, settings_for, wait_caught_up, wait_until
from tests.waiting import until

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT_S = (
    10.0  # the consumer session and heartbeat of the projector and the router (services/faustapp.py)
)
ASSIGNED = "partition assigned"
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
        # A graceful stop, unlike the SIGKILL, leaves the group (LeaveGroup by member and instance id).
        second.stop()
        assert second.popen is not None and second.popen.returncode == 0, second.tail()
        assert f"left group {group_id(settings)} as static member '{member}'" in second.tail(), second.tail()
    finally:
        first.stop()
        if "second" in locals():
            second.stop()


async def test_a_second_live_process_with_the_same_id_fences_the_older_which_stops_with_one_line(
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
        # The broker swaps the newer in for the older and answers the older's next heartbeat (v3, with the
        # instance id) FENCED_INSTANCE_ID; if the older's offset commit (no instance id) is refused first, it
        # rejoins with the id and the newer is the one fenced. Either way one stops, with one line.
        pair = (older, newer)
        await wait_until(
            lambda: _one_stopped(pair), 60, "one of the two to be fenced", lambda: older.tail() + newer.tail()
        )
        outcome = the_fenced(pair)
        assert outcome is not None
        fenced, survivor = outcome
        assert_fenced_with_one_line(fenced, "PROJECTOR_INSTANCE_ID", f"instance id '{member}'")
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
    finally:
        older.stop()
        if newer is not None:
            newer.stop()


async def _one_stopped(procs: tuple[Proc, Proc]) -> bool:
    return the_fenced(procs) is not None


def router(settings: Settings, tmp: Path, instance_id: str) -> Proc:
    env = {"ROUTER_INSTANCE_ID": instance_id, "ROUTER_METRICS_PORT": "0"}  # venues in the router itself
    return service("router", settings, tmp, env).start()


def partitions_assigned(log: str) -> set[int]:
    """The partitions a router's log (or a part of it) says were assigned to it."""
    return {int(m) for m in re.findall(ASSIGNED + r" partition=(\d+)", log)}


def log_of(proc: Proc) -> str:
    return proc.log.read_text(errors="replace") if proc.log.exists() else ""


async def test_a_router_stopped_gracefully_hands_its_partitions_over_at_once(
    infra: Settings, topics: Topics, tmp_path: Path
) -> None:
    """Through Faust's stop path: SIGTERM, its consumer thread stops the aiokafka consumer, which leaves."""
    settings = settings_for(infra, topics)
    suffix = uuid.uuid4().hex[:8]
    first = router(settings, tmp_path, f"router.{suffix}")
    second: Proc | None = None
    try:
        await wait_log(first, ASSIGNED, count=3)
        second = router(settings, tmp_path, f"router-2.{suffix}")
        await wait_log(second, ASSIGNED, count=1)
        mark = len(log_of(second))
        owned = partitions_assigned(log_of(second))
        stopped_at = time.monotonic()
        first.stop()
        left = [line for line in log_of(first).splitlines() if "left group" in line]
        assert len(left) == 1 and f"router.{suffix}" in left[0], first.tail()

        await until(
            lambda: owned | partitions_assigned(log_of(second)[mark:]) == {0, 1, 2},
            60,
            "the second router to own every partition",
        )
        elapsed = time.monotonic() - stopped_at
        print(
            f"\nSIGTERM to the other router owning every partition: {elapsed:.2f} s (session {SESSION_TIMEOUT_S:.0f} s)"
        )
        assert elapsed < SESSION_TIMEOUT_S - HEARTBEAT_S, (
            f"{elapsed:.1f} s: waited out the session?\n{second.tail()}"
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()


def the_fenced(procs: tuple[Proc, Proc]) -> tuple[Proc, Proc] | None:
    """(fenced, survivor) once exactly one of two same-id processes has stopped, else None."""
    stopped = [p for p in procs if not p.alive()]
    if len(stopped) != 1:
        return None
    return stopped[0], next(p for p in procs if p.alive())


def assert_fenced_with_one_line(fenced: Proc, var: str, named: str) -> None:
    assert fenced.popen is not None and fenced.popen.returncode != 0, "a fenced process is not a clean exit"
    lines = [
        line
        for line in fenced.log.read_text(errors="replace").splitlines()
        if "fenced: another process" in line
    ]
    assert len(lines) == 1, fenced.tail()
    assert named in lines[0] and var in lines[0], lines[0]


@contextlib.asynccontextmanager
async def one_fenced(
    start: Callable[[str], Proc], member: str, ready: str, count: int, var: str, named: str
) -> AsyncIterator[Proc]:
    """Start a process with instance id `member`, once it logs `ready` (`count` times) a second one with the
    same id: one of the two is fenced and stops with one line naming `named` and `var`, not with a clean exit
    (usually the older, on its next heartbeat; the newer when the older's offset commit, which carries no
    instance id, is refused first and it rejoins with the id: decision 0029). Yields the survivor, still
    running; both are stopped on the way out."""
    older = start(member)
    newer: Proc | None = None
    try:
        await wait_log(older, ready, count=count)
        newer = start(member)
        pair = (older, newer)
        await until(lambda: the_fenced(pair) is not None, 60, "one of the two to be fenced and stop")
        outcome = the_fenced(pair)
        assert outcome is not None
        fenced, survivor = outcome
        assert_fenced_with_one_line(fenced, var, named)
        yield survivor
    finally:
        older.stop()
        if newer is not None:
            newer.stop()


async def test_a_second_live_router_with_the_same_id_fences_the_older_which_stops_with_one_line(
    infra: Settings, topics: Topics, tmp_path: Path
) -> None:
    settings = settings_for(infra, topics)
    member = f"router.{uuid.uuid4().hex[:8]}"
    start = partial(router, settings, tmp_path)
    async with one_fenced(
        start, member, ASSIGNED, 3, "ROUTER_INSTANCE_ID", f"instance id '{member}'"
    ) as survivor:
        # No ping-pong: the survivor ends up owning every partition and keeps running.
        await until(
            lambda: partitions_assigned(log_of(survivor)) == {0, 1, 2},
            60,
            "the surviving router to own every partition",
        )
        assert survivor.alive(), survivor.tail()


def triggers(settings: Settings, tmp: Path, instance_id: str) -> Proc:
    env = {"TRIGGERS_INSTANCE_ID": instance_id, "TRIGGERS_METRICS_PORT": "0"}
    return service("triggers", settings, tmp, env).start()


async def test_a_second_live_trigger_engine_with_the_same_id_fences_the_older_which_stops_with_one_line(
    infra: Settings, topics: Topics, tmp_path: Path
) -> None:
    settings = settings_for(infra, topics)
    member = f"triggers.{uuid.uuid4().hex[:8]}"
    start = partial(triggers, settings, tmp_path)
    # Its id in the group is `<group>-<TRIGGERS_INSTANCE_ID>` (services/triggers/app.py).
    ready = "market partitions assigned"
    async with one_fenced(start, member, ready, 1, "TRIGGERS_INSTANCE_ID", f"-{member}'") as survivor:
        assert survivor.alive(), survivor.tail()
        # The survivor keeps the id: it stops gracefully and leaves the group by it.
        survivor.stop()
        left = [line for line in log_of(survivor).splitlines() if "left group" in line]
        assert len(left) == 1 and member in left[0], survivor.tail()
