"""WebSocket subscribers as a careful client writes one: one multiplexed `/ws` connection each, every order it
follows subscribed from the start, and after any drop (a killed gateway, a 1013) a reconnect that subscribes
each unfinished order again from the last seq it received. What each received is kept for the checker,
which compares it with the log frame by frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import websockets
from websockets.exceptions import WebSocketException

from services.drill.fold import TERMINAL
from services.drill.verdict import Stream

log = logging.getLogger("oee.drill.ws")
RECONNECT_S = (0.2, 2.0)  # first and longest wait between connection attempts
NOT_FOUND_RETRY_S = 1.0


@dataclass
class _Followed:
    frames: list[tuple[int, str]] = field(default_factory=list)
    ended: bool = False

    @property
    def last_seq(self) -> int:
        return self.frames[-1][0] if self.frames else 0


class Subscriber:
    def __init__(self, index: int, url: str, on_terminal: Callable[[str, float], object]) -> None:
        self.index = index
        self.url = url
        self.on_terminal = on_terminal
        self.orders: dict[str, _Followed] = {}
        self.connects = 0
        self.not_found = 0
        self._socket: websockets.ClientConnection | None = None
        # Orders subscribed on the current connection: subscribing twice would restart a stream from the
        # second request's fromSeq and repeat frames, so each is subscribed once per connection.
        self._subscribed: set[str] = set()
        self._sends: set[asyncio.Task[None]] = set()

    def follow(self, order_id: str) -> None:
        if order_id in self.orders:
            return
        self.orders[order_id] = _Followed()
        if self._socket is not None:
            self._send_later(self._socket, order_id)

    def _send_later(self, socket: websockets.ClientConnection, order_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._subscribe(socket, order_id))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def streams(self) -> list[Stream]:
        return [Stream(self.index, o, tuple(f.frames), f.ended) for o, f in self.orders.items()]

    async def run(self, stop: asyncio.Event) -> None:
        wait = RECONNECT_S[0]
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=10, max_size=2**22) as socket:
                    self.connects += 1
                    self._socket = socket
                    self._subscribed = set()
                    wait = RECONNECT_S[0]
                    for order_id, followed in list(self.orders.items()):
                        if not followed.ended:
                            await self._subscribe(socket, order_id)
                    await self._read(socket, stop)
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.debug("subscriber %d: %r; reconnecting in %.1f s", self.index, exc, wait)
            finally:
                self._socket = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)  # the reconnect backoff, cut short by a stop
            wait = min(RECONNECT_S[1], wait * 2)

    async def _subscribe(self, socket: websockets.ClientConnection, order_id: str) -> None:
        followed = self.orders[order_id]
        if socket is not self._socket or order_id in self._subscribed or followed.ended:
            return
        self._subscribed.add(order_id)
        message = {"action": "subscribe", "orderId": order_id, "fromSeq": followed.last_seq}
        with contextlib.suppress(WebSocketException, OSError):
            await socket.send(orjson.dumps(message).decode())

    async def _read(self, socket: websockets.ClientConnection, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(socket.recv())
                done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    await asyncio.gather(receiving, return_exceptions=True)
                    return
                self._handle(socket, orjson.loads(receiving.result()))
        finally:
            stopping.cancel()

    def _handle(self, socket: websockets.ClientConnection, frame: dict[str, object]) -> None:
        order_id = frame.get("orderId")
        kind = frame.get("type")
        if not isinstance(order_id, str) or order_id not in self.orders:
            return  # heartbeats, pongs
        followed = self.orders[order_id]
        if isinstance(frame.get("seq"), int) and isinstance(kind, str):
            followed.frames.append((int(frame["seq"]), kind))  # type: ignore[call-overload]
            if kind in TERMINAL and not followed.ended:
                followed.ended = True
                self.on_terminal(order_id, time.time())
        elif kind == "error" and frame.get("code") == 4404 and not followed.ended:
            # Not seen within the gateway's timeout (its router was down a while): it exists, ask again.
            self.not_found += 1
            self._subscribed.discard(order_id)  # the gateway dropped that subscription
            loop = asyncio.get_running_loop()
            loop.call_later(NOT_FOUND_RETRY_S, self._send_later, socket, order_id)
