"""`oee deadletters` as an operator runs it, against `oee router` and `oee venue` on this test's topics: the
router sets an undecodable intake record aside; a dead letter whose cause is fixed is replayed once (its order
then completes); a second replay is refused; a replay that fails again comes back naming what it replays."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode, headers_for, key_for
from events.topics import dead_letter_headers
from services.config import Settings
from tests.e2e.harness import LogReader, produce
from tests.e2e.test_router import Start, start  # noqa: F401 (the fixture: venue + router subprocesses)
from tests.samples import order_request

pytestmark = pytest.mark.e2e


def oee(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATABASE_URL=settings.database_url,
        OEE_TOPIC_PREFIX=settings.topic_prefix,
    )
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "deadletters", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def ids(listing: str) -> dict[str, str]:
    """id -> its line, from `oee deadletters list`."""
    return {line.split()[0]: line for line in listing.splitlines()[1:] if line.startswith("router/")}


async def test_router_dead_letters_are_listed_shown_and_replayed_once(start: Start, infra: Settings) -> None:  # noqa: F811
    system = await start()
    settings = system.settings
    topics = system.topics
    await produce(infra.bootstrap_servers, topics.requests, [b"{not json"])
    # A dead letter as a router of an older version left it: a request it could not read then, that this
    # router reads (the cause is fixed). Written the way the router writes them.
    fixed = order_request("sell", "SOL", "USDC", 1.0)
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        headers = dead_letter_headers(
            topics.requests, 1, 4242, "InvalidEvent: OrderRequested schema_version 2 is newer than this code (1)",
            headers_for(fixed),
        )  # fmt: skip
        await producer.send_and_wait(topics.dead_letters, encode(fixed), key=key_for(fixed), headers=headers)
    finally:
        await producer.stop()

    async def listed(count: int) -> dict[str, str]:
        for _ in range(300):
            result = await asyncio.to_thread(oee, settings, "list", "--source", "router")
            assert result.returncode == 0, result.stderr
            found = ids(result.stdout)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"fewer than {count} router dead letters listed:\n{result.stdout}")

    found = await listed(2)
    garbage = next(i for i, line in found.items() if "not JSON" in line)
    injected = next(i for i, line in found.items() if "newer than this code" in line)
    assert f"{topics.requests}[1]@4242" in found[injected]

    shown = await asyncio.to_thread(oee, settings, "show", garbage)
    assert shown.returncode == 0, shown.stderr
    assert "{not json" in shown.stdout and f"came from   {topics.requests}[" in shown.stdout
    assert "InvalidEvent" in shown.stdout and "never replayed" in shown.stdout

    # The fixed one: replayed once, and the order goes through the router to its end.
    replayed = await asyncio.to_thread(oee, settings, "replay", injected)
    assert replayed.returncode == 0, replayed.stderr
    assert f"appended at {topics.requests}[1]@" in replayed.stdout
    async with LogReader(infra.bootstrap_servers, topics.events) as log:
        await log.wait_terminal([fixed.order_id], 60, [system.router, system.venue])
    again = await asyncio.to_thread(oee, settings, "replay", injected)
    assert again.returncode == 1 and "at most once" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr

    # The garbage: replayed, set aside again by the router, and the new dead letter says what it replays.
    assert (await asyncio.to_thread(oee, settings, "replay", garbage)).returncode == 0
    found = await listed(3)
    copy = [line for line in found.values() if f"replay-of {garbage}" in line]
    assert copy, found
    states = {i: line for i, line in found.items() if i in (garbage, injected)}
    assert all(" replayed " in line for line in states.values()), states
    bad = await asyncio.to_thread(oee, settings, "show", "router/x/1")
    assert bad.returncode == 1 and "not a dead letter id" in bad.stderr
