"""Clients that post orders as a careful client does: each order has its own Idempotency-Key, and a 503, a
409 (the same key still in flight), a 429, a timeout or a dropped connection is retried with the same key and
body, on the next API process when there are several, until a definitive answer or the order's deadline.
A 201 is recorded (order id, intake partition, when) and the order handed to a WebSocket subscriber.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

log = logging.getLogger("oee.drill.load")

BODIES = (
    b'{"baseToken":"SOL","quoteToken":"USDC","side":"sell","amountIn":1.5,"slippageBps":100}',
    b'{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":150,"slippageBps":100}',
    b'{"baseToken":"ETH","quoteToken":"USDT","side":"sell","amountIn":0.5,"slippageBps":100}',
    b'{"baseToken":"ETH","quoteToken":"USDT","side":"buy","amountIn":1000,"slippageBps":100}',
)
RETRYABLE = frozenset({409, 429, 500, 502, 503, 504})
BACKOFF_S = (0.2, 2.0)  # first and longest wait between a client's attempts
REQUEST_TIMEOUT_S = 10.0  # the ingress answers within its send timeout (5 s) when it is up


@dataclass
class Posting:
    apis: Sequence[str]  # base URLs
    tag: str  # keys are `<tag>-<n>`
    on_ack: Callable[[str, int, float], None]  # (order id, intake partition, when)
    order_deadline_s: float = 300.0
    concurrency: int = 64
    answers: Counter[str] = field(default_factory=Counter)
    acked_by: Counter[str] = field(default_factory=Counter)  # 201s per API base URL
    refused: list[str] = field(default_factory=list)  # a 4xx that retrying cannot change
    gave_up: int = 0
    released: int = 0
    finished: int = 0
    _api_turn: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    _session: aiohttp.ClientSession | None = None
    _gate: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        self._gate = asyncio.Semaphore(self.concurrency)

    def release(self, n: int) -> None:
        """Start order n (it runs in the background until answered)."""
        self.released += 1
        task = asyncio.get_running_loop().create_task(self._order(n))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _order(self, n: int) -> None:
        assert self._session is not None and self._gate is not None
        key = f"{self.tag}-{n}"
        body = BODIES[n % len(BODIES)]
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        deadline = time.monotonic() + self.order_deadline_s
        wait = BACKOFF_S[0]
        api = next(self._api_turn)
        try:
            async with self._gate:
                while time.monotonic() < deadline:
                    base = self.apis[api % len(self.apis)]
                    url = f"{base}/api/orders/execute"
                    try:
                        async with self._session.post(url, data=body, headers=headers) as response:
                            status, payload = response.status, await response.read()
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self.answers[type(exc).__name__] += 1
                        api += 1  # this API may be down: the next attempt goes to another one
                    else:
                        self.answers[str(status)] += 1
                        if status == 201:
                            self.acked_by[base] += 1
                            answer = orjson.loads(payload)
                            self.on_ack(answer["orderId"], int(answer["position"]["partition"]), time.time())
                            return
                        if status not in RETRYABLE:
                            self.refused.append(f"{key}: {status} {payload[:200].decode(errors='replace')}")
                            return
                    await asyncio.sleep(wait)  # a client's backoff between attempts
                    wait = min(BACKOFF_S[1], wait * 2)
                self.gave_up += 1
        finally:
            self.finished += 1
