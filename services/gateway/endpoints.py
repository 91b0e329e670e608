"""The WebSocket endpoints: `/ws/orders/{orderId}` (one order, the seed's URL) and `/ws` (many orders on
one connection). Thin: validate, wire a `Connection` to `OrderFeed`s, read until the client leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from services.gateway import frames, protocol
from services.gateway.admission import account_of
from services.gateway.connection import Connection
from services.gateway.feed import OrderFeed
from services.gateway.gateway import Gateway

log = logging.getLogger("oee.gateway")

__all__ = ["gateway_stats", "health", "multiplexed", "order_stream"]


async def order_stream(ws: WebSocket) -> None:
    """`/ws/orders/{orderId}?fromSeq=N&keepOpen=1`: the order's frames, then a close (1000) at its end."""
    gateway: Gateway = ws.app.state.gateway
    await ws.accept()
    conn = _connection(gateway, ws, multiplexed=False)
    writer = conn.start()
    feed: OrderFeed | None = None
    try:
        if await _admitted(gateway, conn, ws):
            try:
                request = protocol.stream_request(ws.path_params["order_id"], ws.query_params)
            except protocol.ProtocolError as exc:
                conn.close(protocol.BAD_REQUEST, str(exc))
            else:

                def ended(feed: OrderFeed, code: int, reason: str) -> None:
                    if code == protocol.NORMAL and request.keep_open:
                        return
                    conn.close(code, reason)

                feed = OrderFeed(
                    gateway, conn, request.order_id, request.from_seq, ended, account_of(ws.scope)
                )
                feed.start()
        await _read_until_gone(ws, conn, writer, on_text=lambda text: _answer_ping(conn, text))
    finally:
        if feed is not None:
            feed.stop()
        await conn.stop()
        gateway.closed(conn)


async def multiplexed(ws: WebSocket) -> None:
    """`/ws`: subscribe/unsubscribe messages for any number of orders, heartbeats, ping."""
    gateway: Gateway = ws.app.state.gateway
    await ws.accept()
    opts = gateway.options
    conn = _connection(gateway, ws, multiplexed=True)
    writer = conn.start()
    feeds: dict[str, OrderFeed] = {}
    account = account_of(ws.scope)

    def ended(feed: OrderFeed, code: int, reason: str) -> None:
        if feeds.get(feed.order_id) is feed:
            del feeds[feed.order_id]
        if code == protocol.NORMAL:
            conn.push(frames.control("end", orderId=feed.order_id, code=code, reason=reason))
        elif code == protocol.TRY_AGAIN_LATER or code == protocol.INTERNAL_ERROR:
            conn.close(code, reason)  # the client resumes every order with its own fromSeq
        else:
            conn.push(frames.control("error", orderId=feed.order_id, code=code, error=reason))

    def on_text(text: str) -> None:
        try:
            message = protocol.client_message(text)
        except protocol.ProtocolError as exc:
            conn.push(frames.control("error", code=protocol.BAD_REQUEST, error=str(exc)))
            return
        match message:
            case protocol.Ping(id=ping_id):
                conn.push(frames.control("pong", id=ping_id, ts=int(time.time() * 1000)))
            case protocol.Unsubscribe(order_id=oid):
                old = feeds.pop(oid, None)
                if old is not None:
                    old.stop()
                conn.push(frames.control("unsubscribed", orderId=oid))
            case protocol.Subscribe(order_id=oid, from_seq=from_seq):
                old = feeds.pop(oid, None)
                if old is not None:
                    old.stop()  # a new subscribe restarts the order's stream from its fromSeq
                elif len(feeds) >= opts.max_subscriptions:
                    error = f"at most {opts.max_subscriptions} subscriptions per connection"
                    conn.push(frames.control("error", orderId=oid, code=protocol.BAD_REQUEST, error=error))
                    return
                conn.push(frames.control("subscribed", orderId=oid, fromSeq=from_seq))
                feed = OrderFeed(gateway, conn, oid, from_seq, ended, account)
                feeds[oid] = feed
                feed.start()

    try:
        if await _admitted(gateway, conn, ws):
            gateway.multiplexed.add(conn)
        await _read_until_gone(ws, conn, writer, on_text=on_text)
    finally:
        for feed in list(feeds.values()):
            feed.stop()
        await conn.stop()
        gateway.closed(conn)


def _connection(gateway: Gateway, ws: WebSocket, *, multiplexed: bool) -> Connection:
    opts = gateway.options
    return Connection(
        ws,
        opts.send_queue,
        opts.close_timeout_s,
        multiplexed=multiplexed,
        grace_s=opts.slow_grace_s,
        max_bytes=opts.send_queue_bytes,
        max_lookups=opts.max_lookups,
    )


async def _admitted(gateway: Gateway, conn: Connection, ws: WebSocket) -> bool:
    """Count the connection in (per process, per account) and wait for the log tail; else close it."""
    refusal = gateway.opened(conn, account_of(ws.scope))
    if refusal is not None:
        conn.close(*refusal)
        return False
    if not await gateway.wait_ready():
        conn.close(protocol.TRY_AGAIN_LATER, "gateway not ready (event log unreachable): retry later")
        return False
    return True


async def _read_until_gone(
    ws: WebSocket, conn: Connection, writer: asyncio.Task[None], on_text: Callable[[str], None]
) -> None:
    """Handle client messages until the client disconnects or the writer is done (closed or gave up).

    The handler task itself reads, with no task per message: when the writer ends first (a close the
    client never answers, say), its done-callback cancels this read, and the cancellation is absorbed.
    """
    task = asyncio.current_task()
    assert task is not None
    reading = True
    cut_by_writer = False

    def writer_done(_: asyncio.Task[None]) -> None:
        nonlocal cut_by_writer
        if reading:
            cut_by_writer = True
            task.cancel()

    writer.add_done_callback(writer_done)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            if text is not None and not conn.closing:
                on_text(text)
            # The client's next message once it has read ours and its look-ups are under the limit.
            await conn.wait_to_read()
    except asyncio.CancelledError:
        if not cut_by_writer:
            raise
        task.uncancel()
    finally:
        reading = False
        writer.remove_done_callback(writer_done)


def _answer_ping(conn: Connection, text: str) -> None:
    """A single-order stream ignores what the client says, except a ping (some clients keep alive so)."""
    try:
        message = protocol.client_message(text)
    except protocol.ProtocolError:
        return
    if isinstance(message, protocol.Ping):
        conn.push(frames.control("pong", id=message.id, ts=int(time.time() * 1000)))


async def health(request: Request) -> Response:
    """GET /health: the process is alive (the seed's answer)."""
    return JSONResponse({"status": "ok"})


async def gateway_stats(request: Request) -> Response:
    """GET /gateway/stats: connections, subscriptions, frames and history counters, as JSON."""
    gateway: Gateway = request.app.state.gateway
    return JSONResponse(gateway.snapshot())
