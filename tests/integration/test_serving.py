"""The bounded uvicorn protocols (`services.serving`) under a real uvicorn on loopback, with raw sockets as the
misbehaving clients: slow heads and bodies cut with 408, huge heads 431, connections past the limit 503, a
WebSocket message past the limit closed 1009, a peer that pings and never reads not growing the server's
buffer, a connection its handler left aborted. Also the one place that notices when uvicorn's protocol
classes change under the adapter."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import ConnectionClosed

from services.serving.limits import HTTP_ENV_VARS, HttpLimits
from services.serving.protocols import BoundedHttpProtocol, BoundedWebSocketProtocol
from services.serving.server import uvicorn_config
from tests.raw_websocket import PING, masked, never_reading_client
from tests.waiting import until

LIMITS = HttpLimits(
    max_connections=20, request_timeout_s=0.5, max_header_bytes=2048, ws_linger_s=0.5, send_timeout_s=30.0
)


@dataclasses.dataclass
class Served:
    server: uvicorn.Server
    port: int
    seen: dict[str, Any]

    def connections(self, kind: type) -> int:
        return sum(isinstance(c, kind) for c in self.server.server_state.connections)


def app(seen: dict[str, Any]) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"bytes": len(body)})

    async def slow_reader(request: Request) -> Response:
        seen["handler"] = "started"
        try:
            await request.body()
        finally:
            seen["handler"] = "done"
        return JSONResponse({"late": True})

    async def huge(request: Request) -> Response:
        try:
            return Response(b"h" * (64 * 1024 * 1024))
        finally:
            seen["huge"] = "answered"

    async def echo_ws(ws: WebSocket) -> None:
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text)

    async def flood_then_leave(ws: WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                while True:
                    await ws.send_text("x" * 65536)
        seen["flood"] = "left"

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/slow", slow_reader, methods=["POST"]),
            Route("/huge", huge, methods=["GET"]),
            WebSocketRoute("/ws", echo_ws),
            WebSocketRoute("/flood", flood_then_leave),
        ]
    )


@contextlib.asynccontextmanager
async def serving(limits: HttpLimits = LIMITS, ws_max_size: int = 1024) -> AsyncIterator[Served]:
    seen: dict[str, Any] = {}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(
        app(seen), host="127.0.0.1", port=port, log_level="warning", limits=limits, ws_max_size=ws_max_size
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started and not task.done():
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield Served(server, port, seen)
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """The status and everything the server sent before closing."""
    data = await asyncio.wait_for(reader.read(), timeout)
    assert data.startswith(b"HTTP/1.1 "), data[:100]
    return int(data[9:12]), data


def names(function: Any) -> set[str]:
    return set(function.__code__.co_names)


def test_uvicorn_still_has_what_the_adapter_overrides() -> None:
    """Fails loudly when uvicorn renames or drops a callback or attribute `services.serving.protocols`
    relies on (the adapter would silently stop bounding anything)."""
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "handle_websocket_upgrade",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
    ):
        assert inspect.isfunction(getattr(HttpToolsProtocol, name, None)), f"HttpToolsProtocol.{name}"
    cycle = inspect.signature(RequestResponseCycle.__init__).parameters
    assert {"message_event", "keep_alive"} <= set(cycle)
    # Attribute names the methods use (their code objects, not their source: no parsing needed).
    assert {"cycle", "disconnected", "message_event"} <= names(HttpToolsProtocol.connection_lost)
    assert {"disconnected", "response_started", "response_complete"} <= names(RequestResponseCycle.send)
    for name in ("pause_writing", "resume_writing", "receive", "run_asgi"):
        assert inspect.iscoroutinefunction(getattr(WebSocketsSansIOProtocol, name)) == (
            name in ("receive", "run_asgi")
        ), f"WebSocketsSansIOProtocol.{name}"
    assert {"read_paused", "writable", "queue", "disconnected", "loop"} <= names(
        WebSocketsSansIOProtocol.__init__
    )
    assert {"queue", "read_paused", "transport"} <= names(WebSocketsSansIOProtocol.receive)
    assert {"writable", "disconnected"} <= names(WebSocketsSansIOProtocol.connection_lost)
    assert issubclass(BoundedHttpProtocol, HttpToolsProtocol)
    assert issubclass(BoundedWebSocketProtocol, WebSocketsSansIOProtocol)


def test_defaults_match_the_documented_ones() -> None:
    limits = HttpLimits.from_env({})
    assert limits == dataclasses.replace(HttpLimits(), ws_linger_s=limits.ws_linger_s)
    assert limits.max_connections == int(HTTP_ENV_VARS["HTTP_MAX_CONNECTIONS"][0]) == 4096
    assert limits.request_timeout_s == 5.0 and limits.max_header_bytes == 16384
    assert limits.send_timeout_s == 10.0


async def test_a_request_that_arrives_in_time_is_answered_on_a_kept_alive_connection() -> None:
    async with serving() as s, httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.port}") as client:
        # Three requests over ~0.9 s on one connection: the deadline is each request's, not the connection's.
        for _ in range(3):
            r = await client.post("/echo", content=b"x" * 1000)
            assert r.status_code == 200 and r.json() == {"bytes": 1000}
            await asyncio.sleep(0.3)  # idle time between requests (uvicorn's keep-alive is 5 s)
        assert s.connections(BoundedHttpProtocol) == 1


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /echo HTTP/1.1\r\nHost: x\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab",
    ],
    ids=["nothing", "half-a-head", "half-a-body"],
)
async def test_a_slow_request_is_cut_with_408(sent: bytes) -> None:
    async with serving() as s:
        reader, writer = await raw(s.port)
        started = time.monotonic()
        writer.write(sent)
        status, data = await answer(reader)
        elapsed = time.monotonic() - started
        writer.close()
        assert status == 408 and b"request not received within 0.5 s" in data, data
        assert b"connection: close" in data
        assert 0.4 < elapsed < 2.0, elapsed
        await until(lambda: s.connections(BoundedHttpProtocol) == 0, 5, "the connection to go")


async def test_a_handler_waiting_for_a_slow_body_sees_the_client_gone_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with serving() as s:
        reader, writer = await raw(s.port)
        writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789")
        status, data = await answer(reader)
        writer.close()
        assert status == 408 and data.count(b"HTTP/1.1") == 1, data  # the handler's answer is dropped
        await until(lambda: s.seen.get("handler") == "done", 5, "the handler to end")
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


async def test_a_trickle_of_bytes_does_not_extend_the_deadline() -> None:
    async with serving() as s:
        reader, writer = await raw(s.port)
        started = time.monotonic()

        async def trickle() -> None:
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        feeder = asyncio.create_task(trickle())
        status, _ = await answer(reader)
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        writer.close()
        assert status == 408 and time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000,  # one header, never finished
        b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"X-Many: aaaaaaaaaaaaaaaa\r\n" * 200 + b"\r\n",
        b"GET /echo?" + b"q" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["one-long-header", "many-headers", "long-url"],
)
async def test_a_head_over_the_limit_is_431(head: bytes) -> None:
    async with serving() as s:
        reader, writer = await raw(s.port)
        writer.write(head)
        status, data = await answer(reader)
        writer.close()
        assert status == 431 and b"larger than 2048 bytes" in data, data


async def test_a_head_just_under_the_limit_and_a_body_in_the_same_packet_pass() -> None:
    async with serving() as s:
        reader, writer = await raw(s.port)
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n"
        head += b"X-Pad: " + b"p" * (2040 - len(head) - 9) + b"\r\n\r\n"
        assert len(head) <= 2048
        writer.write(head + b"b" * 5000)
        status, data = await answer(reader)
        writer.close()
        assert status == 200 and data.endswith(b'{"bytes":5000}'), data


async def test_connections_past_the_limit_get_503_and_websockets_do_not_count() -> None:
    limits = dataclasses.replace(LIMITS, max_connections=5, request_timeout_s=5.0)
    async with serving(limits) as s:
        held = [await raw(s.port) for _ in range(5)]
        await until(lambda: s.connections(BoundedHttpProtocol) == 5, 5, "5 connections")
        reader, writer = await raw(s.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status, data = await answer(reader)
        writer.close()
        assert status == 503 and b"too many connections (limit 5)" in data and b"retry-after: 1" in data
        # One goes away: the next one is served. A WebSocket, once upgraded, leaves the HTTP count.
        held.pop()[1].close()
        await until(lambda: s.connections(BoundedHttpProtocol) == 4, 5, "one to go")
        async with websockets.connect(f"ws://127.0.0.1:{s.port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            assert s.connections(BoundedHttpProtocol) == 4
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{s.port}/echo")
            assert r.status_code == 200
        for _, w in held:
            w.close()


async def test_a_websocket_message_over_the_limit_is_closed_1009() -> None:
    async with serving(ws_max_size=1024) as s:
        async with websockets.connect(f"ws://127.0.0.1:{s.port}/ws", max_size=2**20) as ws:
            await ws.send("y" * 1000)
            assert await ws.recv() == "y" * 1000
            await ws.send("z" * 1025)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009 and "exceeds limit of 1024 bytes" in (ws.close_reason or "")


async def test_a_peer_that_pings_and_never_reads_does_not_grow_the_server_s_buffer() -> None:
    async with serving() as s:
        sock = await never_reading_client(s.port, "/ws")
        ping = masked(b"p" * 125, PING)  # each answered by a 127-byte pong the peer never reads
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += sock.send(ping * 64)
            except BlockingIOError:
                await asyncio.sleep(0.01)  # the server stopped reading us, as it should
        protocol = next(
            c for c in s.server.server_state.connections if isinstance(c, WebSocketsSansIOProtocol)
        )
        buffered = protocol.transport.get_write_buffer_size()
        sock.close()
    # Without the bound the server answers every ping: megabytes of pongs pile up in its buffer.
    assert sent > 1_000_000 or buffered < 256 * 1024, (sent, buffered)
    assert buffered < 256 * 1024, f"{buffered} bytes of pongs buffered for a peer that does not read"


async def test_a_connection_its_handler_left_is_aborted_when_the_peer_never_reads() -> None:
    async with serving() as s:  # (the send timeout, 30 s here, would end it too, later)
        sock = await never_reading_client(s.port, "/flood")
        await until(lambda: s.seen.get("flood") == "left", 10, "the handler to give up")
        assert s.connections(WebSocketsSansIOProtocol) == 1  # uvicorn's close() waits on unsent data...
        # ... which a peer that never reads never takes: the connection is aborted after the linger.
        await until(lambda: s.connections(WebSocketsSansIOProtocol) == 0, 3, "the connection to be aborted")
        sock.close()


async def test_a_peer_that_takes_nothing_is_disconnected_after_the_send_timeout() -> None:
    limits = dataclasses.replace(LIMITS, send_timeout_s=0.5, ws_linger_s=60.0, request_timeout_s=60.0)
    async with serving(limits) as s:
        # A WebSocket handler sending to a peer that never reads: its send fails (the peer is gone) after
        # the timeout instead of waiting for ever.
        sock = await never_reading_client(s.port, "/flood")
        started = time.monotonic()
        await until(lambda: s.connections(WebSocketsSansIOProtocol) == 0, 5, "the WebSocket to be cut")
        assert time.monotonic() - started < 2.0 and s.seen.get("flood") == "left"
        sock.close()
        # An HTTP response the client never reads.
        reader, writer = await raw(s.port)
        writer.transport.set_write_buffer_limits(0)  # type: ignore[attr-defined]
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: s.seen.get("huge") == "answered", 5, "the handler to answer")
        reader._transport.pause_reading()  # type: ignore[attr-defined]  # never read the answer
        await until(lambda: s.connections(BoundedHttpProtocol) == 0, 5, "the HTTP connection to be cut")
        writer.close()
