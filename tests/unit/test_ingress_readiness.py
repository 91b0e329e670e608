"""/ready's probe cache: the broker and the database are asked at most once per interval."""

from __future__ import annotations

import asyncio

from services.ingress.readiness import Checks, Readiness


async def test_concurrent_and_repeated_checks_share_one_probe_per_interval() -> None:
    now = [0.0]
    gate = asyncio.Event()
    asked = 0

    async def probe() -> Checks:
        nonlocal asked
        asked += 1
        await gate.wait()
        return Checks(broker=True, database=asked > 1)

    readiness = Readiness(probe, min_interval_s=1.0, clock=lambda: now[0])
    waiting = [asyncio.create_task(readiness.check()) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiting)) == {Checks(True, False)} and asked == 1
    now[0] = 0.9
    assert await readiness.check() == Checks(True, False) and asked == 1
    now[0] = 1.0
    assert await readiness.check() == Checks(True, True) and asked == 2 == readiness.probes
