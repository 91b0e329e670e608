"""uvicorn's httptools and sans-I/O WebSocket protocols with the bounds uvicorn lacks.

This is the one module that reaches into uvicorn's protocol classes (their callbacks and per-connection
attributes); `tests/integration/test_serving.py` runs them under a real uvicorn and fails loudly when those
change.

HTTP (httptools), per connection:

- a request must arrive whole (line, headers and body) within `request_timeout_s` of its first byte (of the
  connection's opening, for the first request): else 408 and the connection is closed. uvicorn has no such
  timeout, so a client sending a byte a second holds a connection, and once its headers are in a task, for
  as long as it likes;
- its line and headers at most `max_header_bytes` (httptools buffers a header of any size): else 431;
- at most `max_connections` HTTP connections at once: one more is answered 503 at once and closed. uvicorn's
  `limit_concurrency` counts WebSockets and tasks too, and answers only once a request's headers arrived,
  so it bounds neither the connections that never send them nor anything per connection kind.

WebSocket (websockets-sansio), per connection:

- while the peer does not read (the transport's buffer is over its high-water mark) nothing more is read
  from it: uvicorn answers a ping by writing a pong at once, so a peer that pings and never reads would grow
  that buffer without bound;
- once the handler returned, a connection still open after `ws_linger_s` is aborted: `transport.close()`
  waits for unsent data forever when the peer does not read.

Both: a peer that takes nothing of what is sent to it for `send_timeout_s` (writing stays paused: its
receive buffer and ours are full) is disconnected. Nothing else would end it: uvicorn's `send` waits for the
buffer to drain for ever, and the peer, not reading, would never see a close frame anyway.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from services.serving.limits import HttpLimits

__all__ = ["BoundedHttpProtocol", "BoundedWebSocketProtocol", "error_response_bytes", "protocols"]

_PHRASES = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
_REJECT_LINGER_S = 1.0  # how long a refused connection stays to let its request in (no RST over the 503)


def error_response_bytes(status: int, error: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response in the API's error shape, closing the connection."""
    body = orjson.dumps({"error": error, "details": []})
    head = [f"HTTP/1.1 {status} {_PHRASES[status]}", "content-type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head += [f"content-length: {len(body)}", "connection: close", "", ""]
    return "\r\n".join(head).encode("latin-1") + body


class _Stall:
    """Disconnects a transport whose writing stays paused (the peer takes nothing) for `timeout_s`."""

    __slots__ = ("_timer",)

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def paused(
        self, loop: asyncio.AbstractEventLoop, timeout_s: float, transport: asyncio.BaseTransport
    ) -> None:
        if self._timer is None:
            self._timer = loop.call_later(timeout_s, transport.abort)  # type: ignore[attr-defined]

    def resumed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _OpenCount:
    """HTTP connections of one server open now (upgraded WebSockets leave the count)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = 0


class BoundedHttpProtocol(HttpToolsProtocol):
    """httptools' protocol with a request deadline, a head size limit, a connection limit and a send timeout.

    A subclass per server (`protocols`) sets `limits` and the shared `count`.
    """

    limits: HttpLimits = HttpLimits()
    count: _OpenCount = _OpenCount()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False
        self._refused = False
        self._upgraded = False
        self._in_head = True  # reading a request's line and headers, or waiting for its first byte
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._stall = _Stall()

    # -- the connection ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.count.open >= self.limits.max_connections:
            self._refuse(transport)
            return
        self.count.open += 1
        self._counted = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stall.resumed()
        self._uncount()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall.paused(self.loop, self.limits.send_timeout_s, self.transport)

    def resume_writing(self) -> None:
        self._stall.resumed()
        super().resume_writing()

    def data_received(self, data: bytes) -> None:
        """Feed the parser at most `max_header_bytes` of a request's head: httptools would buffer any size."""
        limit = self.limits.max_header_bytes
        while data and not (self._refused or self._upgraded or self.transport.is_closing()):
            if not self._in_head:
                super().data_received(data)
                return
            part, data = data[: limit - self._head_bytes], data[limit - self._head_bytes :]
            self._head_bytes += len(part)
            super().data_received(part)
            if self._in_head and self._head_bytes >= limit and not self.transport.is_closing():
                self._answer_and_close(431, f"request line and headers larger than {limit} bytes")
                return

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the transport over: its deadline and count are no longer ours.
        self._upgraded = True
        self._disarm()
        self._stall.resumed()
        self._uncount()
        super().handle_websocket_upgrade()

    # -- parser callbacks -------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the first request's counts from the connection's opening
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0  # the next bytes begin the next request
        super().on_message_complete()

    # -- the bounds -------------------------------------------------------------------------------------
    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused = True
        error = f"too many connections (limit {self.limits.max_connections}): retry later"
        transport.write(error_response_bytes(503, error, {"retry-after": "1"}))
        self._close_after_answer(transport)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.count.open -= 1

    def _timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            seconds = f"{self.limits.request_timeout_s:g}"
            self._answer_and_close(408, f"request not received within {seconds} s")

    def _answer_and_close(self, status: int, error: str) -> None:
        """Answer `status` unless a response is under way already, then close.

        A handler still waiting for the body sees the client gone (`http.disconnect`) and whatever it
        answers is dropped: the client gets this answer instead.
        """
        self._disarm()
        cycle = self.cycle
        if self._in_head:
            if cycle is not None and not cycle.response_complete:
                self.transport.close()  # pipelined behind a response being written: cut, do not mix
                return
        elif cycle.response_started:
            self.transport.close()  # answered already (413 before the body arrived, say)
            return
        else:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(error_response_bytes(status, error))
        self._close_after_answer(self.transport)

    def _close_after_answer(self, transport: asyncio.Transport) -> None:
        """FIN after the answer, then keep reading (and dropping) what the peer still sends for a moment
        before closing. Closing at once makes the kernel answer the peer's next bytes with an RST, which can
        reach it before it has read our answer (a slow body's client saw "connection reset", not the 408)."""
        self._refused = True  # nothing more reaches the parser
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(_REJECT_LINGER_S, transport.close)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that stops reading a peer that does not read, and aborts a
    connection its handler left but the peer keeps open."""

    linger_s: float = 15.0
    send_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stall = _Stall()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stall.resumed()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.transport.pause_reading()
        self._stall.paused(self.loop, self.send_timeout_s, self.transport)

    def resume_writing(self) -> None:
        self._stall.resumed()
        super().resume_writing()
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    async def receive(self) -> Any:
        # uvicorn's own, except that reading resumes only while the peer reads too.
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if self.writable.is_set() and not self.transport.is_closing():
                self.transport.resume_reading()
        return message

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if not self.disconnected:
            self.loop.call_later(self.linger_s, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.disconnected:
            self.transport.abort()


def protocols(limits: HttpLimits) -> tuple[type[BoundedHttpProtocol], type[BoundedWebSocketProtocol]]:
    """The protocol classes for one server (`uvicorn.Config(http=..., ws=...)`), sharing its counts."""

    class Http(BoundedHttpProtocol):
        pass

    class WebSocket(BoundedWebSocketProtocol):
        pass

    Http.limits, Http.count = limits, _OpenCount()
    WebSocket.linger_s, WebSocket.send_timeout_s = limits.ws_linger_s, limits.send_timeout_s
    return Http, WebSocket
