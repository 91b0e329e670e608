"""The drill's view of the PostgreSQL projection: while it runs, when each acknowledged order's row turned
terminal (recovery); at the end, every `orders` and `order_events` row, for the checker to compare with its
own fold of the log. Plain SQL through asyncpg: the projector's code is what is being checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from services.drill.fold import ROW_FIELDS

log = logging.getLogger("oee.drill.projection")
POLL_S = 0.5
CHUNK = 5000  # ids per query


class ProjectionWatcher:
    def __init__(
        self, url: str, waiting: Callable[[], Iterable[str]], on_terminal: Callable[[str, float], object]
    ):
        self.url = url
        self.waiting = waiting  # the acknowledged orders not yet seen terminal here
        self.on_terminal = on_terminal
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                ids = list(self.waiting())
                if ids:
                    try:
                        live: asyncpg.Connection = conn
                        if conn is None or conn.is_closed():
                            conn = live = await asyncio.wait_for(asyncpg.connect(self.url), 5)
                        for start in range(0, len(ids), CHUNK):
                            rows = await asyncio.wait_for(
                                live.fetch(
                                    "SELECT id::text FROM orders WHERE id = ANY($1::uuid[])"
                                    " AND status IN ('confirmed', 'failed')",
                                    ids[start : start + CHUNK],
                                ),
                                10,
                            )
                            now = time.time()
                            for row in rows:
                                self.on_terminal(row["id"], now)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                        self.errors += 1  # PostgreSQL away (a drill fault): look again shortly
                        log.debug("projection poll failed: %r", exc)
                        if conn is not None:
                            conn.terminate()
                            conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)  # the poll period, cut short by a stop
        finally:
            if conn is not None:
                conn.terminate()


async def read_projection(
    url: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple[int, str, str]]]]:
    """Every `orders` row (the fields the checker folds) and every `order_events` row, by order id."""
    conn = await asyncpg.connect(url)
    try:
        columns = ", ".join(f"{c}::text" if c == "last_event_id" else c for c in ROW_FIELDS)
        rows = await conn.fetch(f"SELECT id::text AS order_id, {columns} FROM orders")
        events = await conn.fetch(
            "SELECT order_id::text, seq, event_id::text, type FROM order_events ORDER BY order_id, seq"
        )
    finally:
        await conn.close()
    by_order: dict[str, list[tuple[int, str, str]]] = {}
    for e in events:
        by_order.setdefault(e["order_id"], []).append((e["seq"], e["event_id"], e["type"]))
    return {r["order_id"]: {k: r[k] for k in ROW_FIELDS} for r in rows}, by_order
