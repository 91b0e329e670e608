"""History from PostgreSQL's `order_events` projection, batched: many subscribers arriving at once cost one
query (`order_id = ANY($1)`), not one each.

The projector may lag, may be down, or may store `payload` as the whole event or as its `data` only: a row
that does not make a valid event is skipped, and a query that fails or times out answers "nothing", so the
caller searches the log instead. The projection is a shortcut, never a requirement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from events.codec import EventDecodeError, decode
from events.types import SCHEMA_VERSION
from services.gateway.frames import Item, item_for

log = logging.getLogger("oee.gateway")

__all__ = ["PgHistory", "item_from_row"]

_ENCODER = msgspec.json.Encoder()

# `*`: the projection's columns grew in later migrations (causation_id, schema_version); take what is there.
_QUERY = """
SELECT * FROM order_events
WHERE order_id = ANY($1::uuid[]) AND topic = $2
ORDER BY order_id, seq
"""
_BATCH = 500


class PgHistory:
    def __init__(self, dsn: str, topic: str, pool_size: int, timeout_s: float) -> None:
        self.topic = topic  # rows of this log only: their partition and offset bound a search of it
        self.queries = 0
        self.failures = 0
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._waiting: dict[str, list[Callable[[list[Item]], None]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # min_size=0: nothing connects until the first query, so a database that is down delays nothing.
        self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=self._pool_size)

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    def request(self, order_id: str, reply: Callable[[list[Item]], None]) -> None:
        """Ask for the order's events in the projection, in seq order; `reply` gets them ([] when it has
        none or cannot be asked). A callback, not an awaitable: thousands of streams opening at once should
        cost one query, not a task each."""
        self._waiting.setdefault(order_id, []).append(reply)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="gateway-pg-history")

    def cancel(self, order_id: str, reply: Callable[[list[Item]], None]) -> None:
        """Forget a request whose stream ended (unsubscribed, closed) before its query was sent; one already
        sent is answered, and the stream ignores the answer."""
        replies = self._waiting.get(order_id)
        if replies is not None and reply in replies:
            replies.remove(reply)
            if not replies:
                del self._waiting[order_id]

    def pending(self) -> int:
        """Requests waiting for a query (not counting those of the query under way)."""
        return sum(len(replies) for replies in self._waiting.values())

    async def _flush(self) -> None:
        # Requests that arrive while a query runs wait for the next one: batches form on their own.
        while self._waiting:
            ids = list(self._waiting)[:_BATCH]
            waiting = {oid: self._waiting.pop(oid) for oid in ids}
            found = await self._query(ids)
            for oid, replies in waiting.items():
                for reply in replies:
                    try:
                        reply(found.get(oid, []))
                    except Exception:  # one stream's bug must not starve the others of their history
                        log.exception("history reply failed", extra={"order_id": oid})

    async def _query(self, ids: Sequence[str]) -> dict[str, list[Item]]:
        if self._pool is None:
            return {}
        self.queries += 1
        try:
            # One deadline for the wait on a connection and the query together.
            async with asyncio.timeout(self._timeout_s), self._pool.acquire(timeout=self._timeout_s) as conn:
                rows = await conn.fetch(_QUERY, list(ids), self.topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # down, timed out, table missing: the log has the events too
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("order_events unavailable, searching the log instead: %r", exc)
            return {}
        found: dict[str, list[Item]] = {}
        for row in rows:
            item = item_from_row(row)
            if item is not None:
                found.setdefault(item.order_id, []).append(item)
        return found


def item_from_row(row: Mapping[str, Any]) -> Item | None:
    """An `order_events` row as an item, or None when it does not make a valid event of its order.

    The projector stores `payload` as the event's `data` (upcast); the envelope is rebuilt from the columns
    and the whole decoded by the contract's codec, which validates it as strictly as a log record. A
    payload holding the whole event is accepted too.
    """
    payload: str = row["payload"]
    try:
        event = decode(_envelope(row, payload))
    except EventDecodeError:
        try:
            event = decode(payload.encode())
        except EventDecodeError:
            return None
    if event.order_id != str(row["order_id"]) or event.seq != row["seq"] or event.type != row["type"]:
        return None
    return item_for(event, int(row["partition"]), int(row["offset"]))


def _envelope(row: Mapping[str, Any], payload: str) -> bytes:
    causation = row.get("causation_id")
    occurred_at: datetime = row["occurred_at"]
    head = {
        "type": row["type"],
        "event_id": str(row["event_id"]),
        "order_id": str(row["order_id"]),
        "seq": row["seq"],
        "occurred_at": occurred_at,
        "schema_version": row.get("schema_version") or SCHEMA_VERSION.get(row["type"], 1),
        "causation_id": None if causation is None else str(causation),
    }
    # The payload is JSON text already: splice it in rather than parse and re-encode it.
    return _ENCODER.encode(head)[:-1] + b',"data":' + payload.encode() + b"}"
