"""The gateway's composition root: the log tail, the fan-out hub, the history sources and the counters,
opened in a lifespan and reached by the WebSocket endpoints through `app.state.gateway`.

The same `Gateway` runs mounted in the API process (`oee api`, so the seed's `wsUrl` works on port 3000) and
alone (`oee gateway`, for scale-out). Nothing connects at construction; `start` returns at once and the
tail positions itself in the background (connections wait for it, up to a bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette

from events.topics import Topics
from services.config import Settings
from services.gateway import frames
from services.gateway.admission import Admission
from services.gateway.connection import Connection
from services.gateway.hub import Hub
from services.gateway.logsearch import LogSearch
from services.gateway.options import GatewayOptions
from services.gateway.pghistory import PgHistory
from services.gateway.tail import LogTail
from services.metrics import gateway as metrics

log = logging.getLogger("oee.gateway")

__all__ = ["Gateway", "lifespan"]


class Gateway:
    def __init__(self, settings: Settings, options: GatewayOptions) -> None:
        topic = Topics.with_prefix(settings.topic_prefix).events
        self.options = options
        self.hub = Hub()
        self.tail = LogTail(settings.bootstrap_servers, topic, options.recent_events, self.hub)
        self.search = LogSearch(settings.bootstrap_servers, topic, options.log_lookback)
        self.pg = PgHistory(_dsn(settings.database_url), topic, options.db_pool, options.db_timeout_s)
        self.stats: Counter[str] = Counter()
        self.admission = Admission(options.max_connections, options.max_account_connections)
        self.connections: dict[Connection, str] = {}  # open connections, each with its account
        self.multiplexed: set[Connection] = set()  # the /ws connections, which get heartbeats
        self._heartbeat: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.loop_lag_s = 0.0  # how late the event loop ran a timer lately: > 0.1 s means it is overloaded
        self.gc_pause_max_s = 0.0  # the longest garbage collection since start
        self._gc_started = 0.0

    async def start(self) -> None:
        await self.pg.start()
        self.tail.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="gateway-heartbeat")
        self._watch = asyncio.create_task(self._watch_loop(), name="gateway-loop-lag")
        gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        for conn in list(self.connections):
            conn.close(1001, "gateway shutting down: reconnect with fromSeq")
        for task in (self._heartbeat, self._watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.tail.stop()
        await self.search.stop()
        await self.pg.stop()

    async def wait_ready(self) -> bool:
        """True once the tail has a start position on every partition (subscriptions need it)."""
        if self.tail.ready.is_set():
            return True
        try:
            await asyncio.wait_for(self.tail.ready.wait(), self.options.ready_timeout_s)
        except TimeoutError:
            return False
        return True

    def snapshot(self) -> dict[str, Any]:
        """Counters for /gateway/stats: what a dashboard or a benchmark reads."""
        return {
            "ready": self.tail.ready.is_set(),
            "connections": len(self.connections),
            "accounts": self.admission.accounts(),
            "subscriptions": len(self.hub),
            "partitions": self.tail.partitions,
            "recentEvents": len(self.tail.recent),
            "eventsRead": self.tail.events_read,
            "undecodable": self.tail.undecodable,
            "tailLagMs": round(self.tail.lag_s * 1000, 1),
            "loopLagMs": round(self.loop_lag_s * 1000, 1),
            "gcPauseMaxMs": round(self.gc_pause_max_s * 1000, 1),
            "framesDelivered": self.hub.delivered,
            "framesSent": self.stats["frames_sent"] + sum(c.sent for c in self.connections),
            # Counted when the queue overflows: the close itself waits until the client reads again.
            "slowClosed": self.stats["slow_closed"] + sum(c.overflowed for c in self.connections),
            "notFound": self.stats["not_found"],
            "historyQueries": self.pg.queries,
            "historyQueryFailures": self.pg.failures,
            "lookups": sum(c.lookups.running for c in self.connections),
            "lookupsWaiting": sum(c.lookups.waiting for c in self.connections),
            "historyQueriesPending": self.pg.pending(),
            "logSearches": self.search.searches,
            "logSearchesPending": self.search.pending(),
            "logSearchRecords": self.search.records_read,
            "newOrderLookups": self.search.new_lookups,
            "keyIndexKeys": self.search.index.keys(),
        }

    def opened(self, conn: Connection, account: str) -> tuple[int, str] | None:
        """Count a new connection of `account` in; or the close code and reason when it may not open."""
        refusal = self.admission.admit(account)
        if refusal is None:
            self.connections[conn] = account
            metrics.CONNECTIONS.inc()
        return refusal

    def closed(self, conn: Connection) -> None:
        account = self.connections.pop(conn, None)
        if account is None:
            return  # never admitted
        self.admission.release(account)
        metrics.CONNECTIONS.dec()
        self.multiplexed.discard(conn)
        self.stats["frames_sent"] += conn.sent
        if conn.overflowed:
            self.stats["slow_closed"] += 1
            metrics.SLOW_CLOSES.inc()

    async def _watch_loop(self, every_s: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + every_s
            await asyncio.sleep(every_s)
            self.loop_lag_s = max(0.0, loop.time() - expected)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Full collections walk every tracked object (~150 per connection): they are what stalls a busy
        # gateway, so their length is worth watching (see services.serving.server.tune_gc).
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_pause_max_s = max(self.gc_pause_max_s, pause)

    async def _beat(self, slices: int = 20) -> None:
        """Each /ws connection gets a heartbeat every `heartbeat_s`, a slice of them at a time: 5,000
        writes in one go would hold the event loop (and every frame behind them) for a few hundred ms."""
        turn = 0
        while True:
            await asyncio.sleep(self.options.heartbeat_s / slices)
            beat = frames.control("heartbeat", ts=int(time.time() * 1000))
            for conn in list(self.multiplexed):
                if conn.serial % slices == turn:
                    conn.push(beat)
            turn = (turn + 1) % slices


def lifespan(
    settings: Settings, options: GatewayOptions | None = None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan that opens a `Gateway` on `app.state.gateway` (the gateway part's, see `services.gateway.app`)."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings, options or GatewayOptions.from_env())
        await gateway.start()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.stop()

    return run


def _dsn(url: str) -> str:
    """asyncpg wants postgresql://; accept SQLAlchemy's driver-qualified spelling too."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url
