"""A PostgreSQL LISTEN that stays up: connect, listen, notice a lost session, reconnect with backoff.

Used wherever a process keeps a cache or wakes waiters on NOTIFY (the accounts directory, the read API's
waits). The caller says what to do once listening (`on_listening`: typically "assume something was missed
while nobody listened") and once not (`on_lost`: fall back to polling, stop trusting a cache). A peer gone
without closing the socket never ends the session on its own, so an idle session is probed every
`probe_every_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

__all__ = ["listen_forever"]

log = logging.getLogger("oee.pglisten")

Notify = Callable[[Any, int, str, str], None]  # asyncpg's listener: (connection, pid, channel, payload)


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Notify,
    *,
    application_name: str,
    on_listening: Callable[[], None],
    on_lost: Callable[[], None],
    what: str,
    probe_every_s: float = 10.0,
    probe_timeout_s: float = 5.0,
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
) -> None:
    """LISTEN on `channel` until cancelled, reconnecting after any failure (`what` names it in the log)."""
    delay = first_delay_s
    while True:
        lost = asyncio.Event()
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, server_settings={"application_name": application_name})
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(channel, on_notify)
            delay = first_delay_s
            on_listening()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), probe_every_s)
                if not lost.is_set():
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), probe_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: %r; reconnecting in %.1f s", what, exc, delay)
        finally:
            on_lost()
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)
