"""What the access log and request ids cost per request, in process (no server, no network):

    uv run python -m bench.bench_access_log [--requests 20000]

A bare ASGI app, the same behind `AccessLog(enabled=False)` (request id only) and behind `AccessLog` with the
line formatted as JSON into memory. Prints the best of five runs per variant, in µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
from typing import Any

from services import logs
from services.http.access import AccessLog


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    return None


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def _scope() -> dict[str, Any]:
    return {
        "type": "http", "method": "GET", "path": "/api/orders/x", "query_string": b"",
        "headers": [(b"x-request-id", b"abc-1")], "client": ("127.0.0.1", 5000),
    }  # fmt: skip


async def _per_request(app: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await app(_scope(), _receive, _send)
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int) -> None:
    logs.setup("INFO", "json", "bench")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    for name, app in (
        ("bare app", _app),
        ("request id only", AccessLog(_app, enabled=False)),
        ("access log (json)", AccessLog(_app)),
    ):
        handler.setStream(io.StringIO())
        best = min([await _per_request(app, n) for _ in range(5)])
        print(f"{name:<20} {best:7.2f} µs/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
