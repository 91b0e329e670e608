"""One WebSocket's outgoing side: a bounded queue of encoded frames and the one task that writes them.

Producers (the hub, history loads, heartbeats, answers to pings) only ever `push`, which never waits. The
writer sends in order and waits on the socket's flow control (uvicorn pauses `send` while the transport
buffer is full), so a client that does not read makes the queue grow. The queue is bounded in frames
(`max_frames`) and in characters (`max_bytes`; bytes, for the ASCII JSON of event frames): past either
limit the client has `grace_s` to bring it back under (a burst of history for many orders at once is not
slowness); if it does not, or if the queue reaches four times a limit, what is queued is dropped and the
connection closed with 1013 and a reason saying how to resume. Memory per connection is bounded by that
cap, the transport's buffer and the close timeout.

The other direction has flow control too: `wait_to_read` holds the client's next message while the queue
is over half a limit, so a client subscribing or pinging faster than it reads is slowed down instead of
closed. (One that reads nothing at all is disconnected by the server after `HTTP_SEND_TIMEOUT_MS`.)

`lookups` bounds the history look-ups (projection queries, log searches) the connection's streams have
under way: more wait their turn, in order, and a stream that ends withdraws its own. However a client
subscribes, it keeps at most `max_lookups` pieces of work on the database and the log.

A live event's frame carries the event's time: when the writer has handed it to the socket it records the
delivery lag (`oee_gateway_delivery_lag_seconds`, the lag monitor's `log_to_gateway` stage). History and
control frames carry none: their age says how old the order is, not how late the gateway is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.gateway import protocol
from services.metrics.gateway import observe_delivery

log = logging.getLogger("oee.gateway")

__all__ = ["Connection", "Lookups"]

_serials = itertools.count()


class Lookups:
    """At most `limit` look-ups under way; the others wait their turn in order (synchronous: a turn is a
    callback that starts the work, and `done` hands the slot on)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: deque[Callable[[], None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def ask(self, turn: Callable[[], None]) -> None:
        """Call `turn` now if a look-up is free, else when one is. `turn` must call `done` once finished."""
        if self.running < self.limit:
            self.running += 1
            turn()
        else:
            self._waiting.append(turn)

    def withdraw(self, turn: Callable[[], None]) -> None:
        """Forget a turn not yet taken (its stream ended)."""
        try:
            self._waiting.remove(turn)
        except ValueError:
            pass

    def done(self) -> None:
        self.running -= 1
        if self._waiting and self.running < self.limit:
            self.running += 1
            self._waiting.popleft()()


class Connection:
    def __init__(
        self,
        ws: WebSocket,
        max_frames: int,
        close_timeout_s: float,
        *,
        multiplexed: bool,
        grace_s: float = 1.0,
        max_bytes: int = 4 * 1024 * 1024,
        max_lookups: int = 100,
    ) -> None:
        self.ws = ws
        self.serial = next(_serials)  # spreads per-connection periodic work (heartbeats) evenly
        self.sent = 0
        self.last_seq_sent: int | None = None  # for the close reason of a single-order stream
        self.close_code: int | None = None
        self.close_reason = ""
        self.overflowed = False
        self.room = asyncio.Event()  # set while the queue is under half the limit
        self.room.set()
        self.lookups = Lookups(max_lookups)  # history look-ups of this connection's streams
        self._max = max_frames
        self._hard_max = 4 * max_frames
        self._max_bytes = max_bytes
        self._hard_max_bytes = 4 * max_bytes
        self._bytes = 0  # characters queued
        self._dropped = 0
        self._grace_s = grace_s
        self._slow_timer: asyncio.TimerHandle | None = None
        self._close_timeout_s = close_timeout_s
        self._multiplexed = multiplexed
        self._queue: deque[tuple[str, int | None, float | None]] = deque()  # frame, seq, live event time
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def push(self, frame: str, seq: int | None = None, live_at: float | None = None) -> bool:
        """Queue a frame; False when the connection is closing (or just started closing for overflow).
        `live_at`: the event time of a live event's frame, whose delivery lag is recorded once sent."""
        if self.close_code is not None:
            return False
        queue = self._queue
        queue.append((frame, seq, live_at))
        self._bytes += len(frame)
        n, size = len(queue), self._bytes
        if n >= self._max // 2 or size >= self._max_bytes // 2:
            self.room.clear()
            if n >= self._max or size >= self._max_bytes:
                if n >= self._hard_max or size >= self._hard_max_bytes:
                    self._overflow()
                    return False
                if self._slow_timer is None:
                    self._slow_timer = asyncio.get_running_loop().call_later(self._grace_s, self._check_slow)
        self._wake.set()
        return True

    def _over(self) -> bool:
        return len(self._queue) >= self._max or self._bytes >= self._max_bytes

    def _check_slow(self) -> None:
        self._slow_timer = None
        if self.close_code is None and self._over():
            self._overflow()

    async def wait_to_read(self) -> None:
        """Return once the client's next message may be handled: it has read enough of what it is sent."""
        if not self.room.is_set():
            await self.room.wait()

    def _overflow(self) -> None:
        self.overflowed = True
        self._dropped = len(self._queue)
        self.close(protocol.TRY_AGAIN_LATER, protocol.slow_reason(self._dropped), flush=False)

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Close after the queued frames (`flush`) or instead of them; the first close wins."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, protocol.reason(reason)
        if not flush:
            self._queue.clear()
            self._bytes = 0
        if self._slow_timer is not None:
            self._slow_timer.cancel()
        self.room.set()  # nothing more is read from the client once closing; do not keep it waiting
        self._wake.set()
        # A client that does not read never lets the close frame out: give up on it after a while.
        self._deadline = asyncio.get_running_loop().call_later(self._close_timeout_s, self._abandon)

    def start(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._write(), name="gateway-writer")
        return self._writer

    async def stop(self) -> None:
        for timer in (self._deadline, self._slow_timer):
            if timer is not None:
                timer.cancel()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    def _abandon(self) -> None:
        if self._writer is not None and not self._writer.done():
            log.info("gave up closing a connection that does not read", extra={"code": self.close_code})
            self._writer.cancel()

    async def _write(self) -> None:
        send = self.ws.send
        queue = self._queue
        try:
            while True:
                while queue:
                    frame, seq, live_at = queue.popleft()
                    self._bytes -= len(frame)
                    await send({"type": "websocket.send", "text": frame})
                    self.sent += 1
                    if seq is not None:
                        self.last_seq_sent = seq
                    if live_at is not None:
                        observe_delivery(live_at)
                    if (
                        not self.room.is_set()
                        and len(queue) < self._max // 2
                        and self._bytes < self._max_bytes // 2
                    ):
                        self.room.set()
                if self.close_code is not None:
                    break
                self._wake.clear()
                await self._wake.wait()
            if self.overflowed and not self._multiplexed:
                # Named now, not at the overflow: the frame that was in flight then has gone out since.
                self.close_reason = protocol.slow_reason(self._dropped, self.last_seq_sent)
            await send({"type": "websocket.close", "code": self.close_code, "reason": self.close_reason})
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            # The client went away: Starlette turns uvicorn's ClientDisconnected (an OSError) into
            # WebSocketDisconnect, and a send after the close into WebSocketDisconnected (a RuntimeError).
            log.debug("connection writer stopped: %r", exc)
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
