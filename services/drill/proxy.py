"""A TCP proxy between the routers and the venue that can lose the venue's replies (Jepsen's "indeterminate"
operation): while dropping, every byte from the routers still reaches the venue (a submit is accepted and
executed) but nothing the venue answers comes back. When the drop ends, each connection that lost bytes is
closed: its HTTP framing is broken, as a real connection that lost a reply would be abandoned by its client.

The routers reach the venue only through it (`VENUE_URL` points here), so the drill can turn it on and off
without touching either side. Toxiproxy does the same for other projects; it is not installable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

log = logging.getLogger("oee.drill.proxy")
CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    lost: bool = False  # a reply (or part of one) was dropped on this connection


@dataclass
class ReplyDropper:
    target_host: str
    target_port: int
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (read `port` after `start`)
    dropping: bool = False
    dropped_bytes: int = 0
    dropped_replies: int = 0  # reads from the venue that were discarded (about one per reply)
    _server: asyncio.Server | None = None
    _links: set[_Link] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> ReplyDropper:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop(self) -> None:
        """From now on, deliver requests and discard replies."""
        self.dropping = True

    def heal(self) -> int:
        """Deliver replies again; close the connections that lost one. Returns how many were closed."""
        self.dropping = False
        broken = [link for link in self._links if link.lost]
        for link in broken:
            link.client.transport.abort()
            link.upstream.transport.abort()
        return len(broken)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for link in list(self._links):
                link.client.transport.abort()
                link.upstream.transport.abort()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with contextlib.suppress(asyncio.CancelledError):  # `aclose` ends a connection: nothing to report
            await self._link(reader, writer)
        self._tasks.discard(task)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # the venue is down: the client sees its connection reset
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._forward(reader, up_writer, None)),
            asyncio.create_task(self._forward(up_reader, writer, link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task_ in pumps:
                task_.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()
            self._links.discard(link)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: _Link | None
    ) -> None:
        """Copy until EOF; `replies` is set on the venue-to-router direction, the one that may be dropped."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                if replies is not None and self.dropping:
                    replies.lost = True
                    self.dropped_bytes += len(data)
                    self.dropped_replies += 1
                    continue
                writer.write(data)
                await writer.drain()
