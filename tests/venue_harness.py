"""The venue's HTTP tests' common pieces: both simulated venues on one chain, and uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from services.venue.pool import METEORA, RAYDIUM
from services.venue.registry import ClientOrderIds
from services.venue.simulator import SimulatedVenue

TOKENS = ("SOL", "USDC", "ETH", "USDT")


def cid() -> str:
    return f"order-{uuid.uuid4()}"


@contextlib.asynccontextmanager
async def simulated(**kwargs: Any) -> AsyncIterator[dict[str, SimulatedVenue]]:
    """Raydium and Meteora sharing one client-order-id registry, as `build_venues` makes them."""
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("execution_latency_s", 0.0)
    kwargs.setdefault("order_ids", ClientOrderIds())
    sims = {
        "raydium": SimulatedVenue("raydium", RAYDIUM, TOKENS, **kwargs),
        "meteora": SimulatedVenue("meteora", METEORA, TOKENS, **kwargs),
    }
    try:
        yield sims
    finally:
        for sim in sims.values():
            await sim.aclose()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """uvicorn on 127.0.0.1 with an ephemeral port. The socket listens before the server task runs, so a
    client's first connect queues instead of racing the startup: no readiness polling. The explicit
    IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose `proto` says TCP, and without it
    every reply waits ~40 ms on Nagle and delayed ACKs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
