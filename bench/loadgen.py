"""An aiohttp load generator for POST /api/orders/execute, run in its own process.

    python -m bench.loadgen URL --rate 100 --duration 30 --out FILE          open loop
    python -m bench.loadgen URL --orders 10000 --concurrency 64 --out FILE   closed loop (wrk's fallback)
    ... --header "Authorization: Bearer oee_..."                           extra headers (repeatable)
    ... --keys TAG                                                         Idempotency-Key TAG-<n> on request n

Open loop: request i is sent at t0 + i / rate whatever happened to the earlier ones (no coordinated
omission: a slow reply never delays the next send). Closed loop: `concurrency` workers each send, wait for
the answer, send again. Writes JSON: one row per request `[scheduled, sent, answered, status, order_id]`
(epoch seconds; `scheduled` is the open loop's plan, the send time in the closed loop).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BODIES = [
    b'{"baseToken":"SOL","quoteToken":"USDC","side":"sell","amountIn":1.5,"slippageBps":100}',
    b'{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":150,"slippageBps":100}',
    b'{"baseToken":"ETH","quoteToken":"USDT","side":"sell","amountIn":0.5,"slippageBps":100}',
    b'{"baseToken":"ETH","quoteToken":"USDT","side":"buy","amountIn":1000,"slippageBps":100}',
]
HEADERS = {"Content-Type": "application/json"}
Row = tuple[float, float, float, int, str]


KEY_TAG: list[str] = []  # --keys TAG: request i carries Idempotency-Key TAG-i


async def post(session: aiohttp.ClientSession, url: str, body: bytes, scheduled: float, i: int = 0) -> Row:
    sent = time.time()
    headers = {**HEADERS, "Idempotency-Key": f"{KEY_TAG[0]}-{i}"} if KEY_TAG else HEADERS
    try:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
            status = response.status
    except aiohttp.ClientError:
        return (scheduled, sent, time.time(), 0, "")
    answered = time.time()
    order_id = orjson.loads(payload).get("orderId", "") if status == 201 else ""
    return (scheduled, sent, answered, status, order_id)


async def open_loop(url: str, rate: float, duration_s: float) -> list[Row]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start, wall = loop.time() + 0.05, time.time() + 0.05
        tasks = []
        for i in range(int(rate * duration_s)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            body = BODIES[i % len(BODIES)]
            tasks.append(asyncio.create_task(post(session, url, body, wall + i / rate, i)))
        return list(await asyncio.gather(*tasks))


async def closed_loop(url: str, orders: int, concurrency: int) -> list[Row]:
    counter = itertools.count()
    rows: list[Row] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while (i := next(counter)) < orders:
            rows.append(await post(session, url, BODIES[i % len(BODIES)], time.time(), i))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: seconds")
    parser.add_argument("--orders", type=int, default=10_000, help="closed loop: requests")
    parser.add_argument("--concurrency", type=int, default=64, help="closed loop: in flight")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent with every request")
    parser.add_argument("--keys", metavar="TAG", help="an Idempotency-Key TAG-<n> on request n")
    args = parser.parse_args()
    if args.keys:
        KEY_TAG.append(args.keys)
    for header in args.header:
        name, _, value = header.partition(":")
        HEADERS[name.strip()] = value.strip()
    import uvloop

    if args.rate:
        rows = uvloop.run(open_loop(args.url, args.rate, args.duration))
    else:
        rows = uvloop.run(closed_loop(args.url, args.orders, args.concurrency))
    result: dict[str, Any] = {"mode": "open" if args.rate else "closed", "rows": rows}
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
