"""An ASGI app under a real uvicorn on a free loopback port, started and stopped the one way every test
harness needs (the API's, the gateway's): the socket is bound here, so the port is known without a race, and
the server is waited for with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable

import uvicorn


@dataclasses.dataclass
class Served:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, timeout_s)


async def serve(config_for: Callable[[int], uvicorn.Config], start_timeout_s: float = 30.0) -> Served:
    """Start `config_for(port)` on a fresh loopback port; raise what the server raised if it did not start."""
    sock = socket.socket()  # uvicorn's server closes it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config_for(port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + start_timeout_s
    while not server.started and not task.done():
        assert time.monotonic() < deadline, f"uvicorn did not start within {start_timeout_s:g} s"
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    return Served(server, task, port)
