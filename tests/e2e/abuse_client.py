"""The abusive clients of `tests/e2e/test_abuse.py`, in a process of their own (so the test's probe measures
the API, not this load's event loop): `python -m tests.e2e.abuse_client PORT WAITERS SLOW`.

WAITERS reads wait on `waitMs` for orders that never come; SLOW connections send an order's body a byte a
second. Opened in batches over about a second, then it waits for every answer and prints one JSON line:
the waiters' statuses and how long after opening each slow body was cut (and with what status).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid

import orjson


async def waiting_read(port: int, statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /api/orders/{uuid.uuid4()}?minSeq=1&waitMs=10000 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readline(), 60)
        statuses.append(int(head.split()[1]))
    finally:
        writer.close()


async def slow_body(port: int, cuts: list[tuple[int, float]]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n{"
    )

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(60):
                await asyncio.sleep(1.0)  # the abuse itself: one byte a second
                writer.write(b" ")
                await writer.drain()

    feeding = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), 60)
        status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0
        cuts.append((status, time.monotonic() - started))
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        writer.close()


async def main(port: int, waiters: int, slow: int) -> None:
    statuses: list[int] = []
    cuts: list[tuple[int, float]] = []
    jobs = [waiting_read(port, statuses) for _ in range(waiters)] + [
        slow_body(port, cuts) for _ in range(slow)
    ]
    tasks = []
    for i in range(0, len(jobs), 100):  # ~1 s to open them all, as a crowd arrives, not in one instant
        tasks += [asyncio.create_task(job) for job in jobs[i : i + 100]]
        await asyncio.sleep(0.04)
    print(orjson.dumps({"opened": True}).decode(), flush=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    print(orjson.dumps({"statuses": statuses, "cuts": cuts, "errors": errors[:5]}).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
