"""Scale-out on one cluster: `OEE_ROUTERS=2 OEE_APIS=2 oee up` runs two routers in one consumer group and two
APIs on their own ports. Orders are posted through both APIs while a third router joins (a rebalance), one of
the two is SIGKILLed (its partitions move once its session ends, and again when the supervisor has it back)
and the third leaves: every 201 ends with exactly one lifecycle in the log, at most one swap per order across
both venues' journals, every confirmation matching its execution."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.topics import Topics
from services.config import Settings
from services.drill.ledgers import journal_paths, read_swaps
from services.drill.load import Posting
from services.stack.ports import free_port_block
from tests.e2e.harness import LogReader, assert_lifecycle, service
from tests.e2e.stackrun import StackRun

pytestmark = pytest.mark.e2e

ASSIGNED = "partition assigned"
RATE = 10.0  # orders per second, from the test's own clients (each retries with its Idempotency-Key)


@pytest.fixture
def run(infra: Settings, tmp_path: Path) -> Iterator[StackRun]:
    stack = StackRun.create(
        tmp_path,
        shared_kafka=infra.bootstrap_servers,
        OEE_ROUTERS="2",
        OEE_APIS="2",
        OEE_PARTITIONS="6",  # with 3 routers Faust's sticky assignor moves some (at 4 it would not: 2+2)
        PORT=str(free_port_block(2)),  # API 2 takes PORT + 1
    )
    yield stack
    stack.down()


def assigned_since(log: Path, marker: str = "") -> int:
    """`partition assigned` lines of a router's log, after the last line containing `marker`."""
    text = log.read_text(errors="replace") if log.exists() else ""
    if marker:
        text = text.rsplit(marker, 1)[-1] if marker in text else ""
    return text.count(ASSIGNED)


async def until(predicate, timeout: float, what: str, run: StackRun, extra: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not {what} within {timeout} s\n{run.logs_tail()}\n{extra}"
        await asyncio.sleep(0.2)


async def test_routers_joining_dying_and_leaving_under_load_lose_and_double_nothing(
    run: StackRun, tmp_path: Path
) -> None:
    run.up()
    status = run.status()
    for name in ("router", "router-2", "api", "api-2"):
        assert status[name]["state"] == "running", status[name]
    port = int(run.env["PORT"])
    assert status["api-2"]["where"] == f":{port + 1}"
    apis = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]

    acked: dict[str, int] = {}
    posting = Posting(apis, f"scale-{time.time_ns()}", lambda o, p, at: acked.setdefault(o, p), 120, 32)
    await posting.open()
    stop = asyncio.Event()

    async def pace() -> None:
        n = 0
        while not stop.is_set():
            posting.release(n)
            n += 1
            await asyncio.sleep(1 / RATE)  # the load's pace

    # Orders from the moment `up` returns: the routers' first rebalance (the second one joining the group the
    # first formed alone) happens under load, on partitions no offset was committed for yet.
    load = asyncio.create_task(pace())
    extra = None
    try:
        logs = run.state_dir / "logs"
        await until(
            lambda: assigned_since(logs / "router.log") and assigned_since(logs / "router-2.log"),
            60,
            "both routers owning partitions",
            run,
        )
        await until(lambda: len(acked) >= 20, 60, "orders flowing", run)

        # A third router joins the group while orders flow: a rebalance hands it partitions.
        secret = (run.state_dir / "venue.secret").read_text().strip()
        extra = service(
            "router",
            run.settings,
            tmp_path,
            {
                "VENUE_URL": f"http://127.0.0.1:{run.env['VENUE_PORT']}",
                "VENUE_SECRET": secret,
                "ROUTER_METRICS_PORT": "0",
            },
        ).start()
        await until(lambda: ASSIGNED in extra.tail(200), 90, "the third router owning a partition", run)

        # One of the two SIGKILLed: its partitions move to the others, then some back once it is restarted.
        killed = run.signal("router-2", signal.SIGKILL)
        back = await run.await_component(
            "router-2",
            lambda c: c["state"] == "running" and c["pid"] not in (None, killed) and c["restarts"] == 1,
            60,
            "restarted",
        )
        restarted = f"started router-2 (pid {back['pid']}, restart 1)"
        await until(
            lambda: assigned_since(logs / "router-2.log", restarted) > 0,
            90,
            "the restarted router owning a partition again",
            run,
        )
        # The third leaves as an operator stops one (SIGTERM): one more rebalance.
        extra.stop()
        await asyncio.sleep(3)  # orders keep flowing after the last rebalance (the load's duration)
    finally:
        stop.set()
        await load
        if extra is not None:
            extra.stop()
    await posting.drain()
    await posting.close()
    assert not posting.refused and not posting.gave_up, (posting.refused, posting.gave_up, posting.answers)
    assert all(posting.acked_by[api] > 0 for api in apis), f"both APIs took orders: {posting.acked_by}"

    topics = Topics.with_prefix(run.settings.topic_prefix)
    async with LogReader(run.bootstrap, topics.events) as log:
        await log.wait_terminal(list(acked), 120)
        await log.settle(2.0)
    for events in log.by_order.values():
        assert_lifecycle(events)  # one OrderRequested, seq gap-free, exactly one terminal event
    assert set(acked) <= set(log.by_order)

    swaps = read_swaps(journal_paths(run.state_dir / "venue" / "ledger.jsonl"))
    for order_id in log.by_order:
        assert len(swaps.accepted.get(order_id, [])) <= 1, f"{order_id} accepted {swaps.accepted[order_id]}"
        assert len(swaps.settled.get(order_id, [])) <= 1, f"{order_id} settled twice"
        final = log.by_order[order_id][-1]
        executions = swaps.executions(order_id)
        if final.type == "OrderConfirmed":
            assert [(e.venue, e.tx_hash) for e in executions] == [(final.data.venue, final.data.tx_hash)]
        else:
            assert executions == [], f"{order_id} failed in the log but executed"
    print(
        f"\nscale-out: {len(acked)} orders acknowledged ({dict(posting.acked_by)}), answers "
        f"{dict(posting.answers)}; rebalances: a third router joined, router-2 SIGKILLed and back, the third "
        f"left; {sum(1 for e in log.by_order.values() if e[-1].type == 'OrderConfirmed')} confirmed"
    )
