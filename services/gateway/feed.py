"""One order's stream into one connection: what was, then what happens, in seq order, gap-free.

`start` registers for live events and takes the recent events kept from the tail in the same step (no
await in between), so those two together hold every event of the order from the tail window's low offset
on, without overlap. Anything older comes from PostgreSQL, and whatever PostgreSQL lacks (projector behind
or down) from a bounded search of the order's partition. The `Sequencer` merges the sources, drops
repeats, and holds back events behind a missing seq until it is found: a client never sees a gap.

Event-driven rather than a task per stream: a stream costs a few objects until it needs a log search, so
thousands can open at once. `_next` decides the one next step after anything changed.

Isolation: a stream shows an order only to the account that placed it. The order's owner is in its first
event (`OrderRequested`), so the sequencer always starts from seq 1, whatever the client's `fromSeq` (frames
up to `fromSeq` are simply not sent). Until seq 1 has said whose the order is, nothing is sent; if it is
another account's, the stream stops following it and waits out the not-found timeout exactly as for an id
that does not exist (close 4404, or an `error` 4404 on `/ws`): the client cannot tell the two apart.

Each look-up (the projection asked, the log searched) takes its turn among the connection's
(`Connection.lookups`, bounded); a stream that stops (or finds the order is another account's) withdraws
its look-up, whether it was waiting for its turn or under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.gateway import protocol
from services.gateway.connection import Connection
from services.gateway.frames import Item
from services.gateway.partitioning import partition_for
from services.gateway.sequencer import Gap, Overflow, Sequencer

if TYPE_CHECKING:
    from services.gateway.gateway import Gateway

log = logging.getLogger("oee.gateway")

__all__ = ["End", "OrderFeed"]

End = Callable[["OrderFeed", int, str], None]
"""Called once when the stream ends: (feed, close code, reason). 1000 means complete."""


class OrderFeed:
    def __init__(
        self, gateway: Gateway, conn: Connection, order_id: str, from_seq: int, on_end: End, account: str
    ) -> None:
        self.gateway = gateway
        self.conn = conn
        self.order_id = order_id
        self.account = account
        self.from_seq = from_seq  # frames up to this seq are the client's already
        self.owned = False  # seq 1 said the order is this account's
        self.foreign = False  # seq 1 said it is another account's: behave as for an unknown id
        self.seq = Sequencer(0, limit=gateway.options.send_queue)
        self._on_end = on_end
        self._lows: dict[int, int] = {}  # the tail window's low offset per partition, at start
        self._awaiting_projection = False
        self._search: asyncio.Task[None] | None = None
        self._searched: set[tuple[str, int]] = set()
        self._not_found: asyncio.TimerHandle | None = None
        self._scan_timer: asyncio.TimerHandle | None = None
        self._turn: Callable[[], None] | None = None  # the look-up waiting for its turn on the connection
        self._looking = False  # a look-up of ours holds one of the connection's turns
        self._searching = False  # a log search is asked for (waiting for its turn, or under way)
        self._ended = False

    # -- life -------------------------------------------------------------------------------------------
    def start(self) -> None:
        gw = self.gateway
        tail = gw.tail
        # Live first, then the window, with no await in between: nothing can fall between the two.
        gw.hub.add(self.order_id, self)
        self._lows = tail.recent.lows()
        snapshot = tail.recent.snapshot(self.order_id)
        for item in snapshot:
            self.seq.add(item)
        self._pump()
        if self._ended:
            return
        if not self.owned:
            loop = asyncio.get_running_loop()
            self._not_found = loop.call_later(gw.options.not_found_timeout_s, self._give_up)
        if self.foreign:
            return
        if not snapshot or snapshot[0].seq > self.seq.last + 1:
            # Older events than the window holds may exist: ask the projection first.
            self._awaiting_projection = True
            self._lookup(gw.pg.request, self.order_id, self._on_projection)

    def stop(self) -> None:
        """Stop following (the client left, unsubscribed, or the stream ended)."""
        if self._ended:
            return
        self._ended = True
        self.gateway.hub.remove(self.order_id, self)
        for timer in (self._not_found, self._scan_timer):
            if timer is not None:
                timer.cancel()
        if self._turn is not None:
            self.conn.lookups.withdraw(self._turn)
            self._turn = None
        elif self._awaiting_projection:
            self.gateway.pg.cancel(self.order_id, self._on_projection)
        if self._search is not None and self._search is not asyncio.current_task():
            self._search.cancel()
        self._lookup_done()

    # -- look-ups, one at a time, each in its turn among the connection's ------------------------------
    def _lookup(self, start: Callable[..., Any], *args: Any) -> None:
        def turn() -> None:
            self._turn = None
            self._looking = True
            start(*args)

        self._turn = turn
        self.conn.lookups.ask(turn)

    def _lookup_done(self) -> None:
        if self._looking:  # once: a stream that stopped has handed its turn on already
            self._looking = False
            self.conn.lookups.done()

    # -- sources ----------------------------------------------------------------------------------------
    def on_event(self, item: Item) -> None:
        """A live event of this order, from the tail (synchronous: it must not wait)."""
        if self._ended or self.foreign:
            return
        try:
            self.seq.add(item)
        except Overflow as exc:
            self._end(protocol.TRY_AGAIN_LATER, f"{exc}; reconnect with fromSeq")
            return
        self._pump(live=item)
        if self.seq.gap() is not None:
            self._next()

    def _on_projection(self, items: list[Item]) -> None:
        if self._ended:
            return
        self._awaiting_projection = False
        self._lookup_done()
        if self.foreign:
            return
        for item in items:
            self.seq.add(item)
        self._pump()
        self._next()

    def _next(self) -> None:
        """After any change: search the log if something is missing that it may hold, else wait."""
        if self._ended or self.foreign or self.seq.done or self._awaiting_projection or self._searching:
            return
        gap = self.seq.gap()
        if gap is not None:
            if ("gap", gap.first_missing) in self._searched:
                # Searched already and still missing: say so rather than skip a seq.
                missing = f"seq {gap.first_missing}"
                log.warning("history incomplete", extra={"order_id": self.order_id, "missing": missing})
                self._end(protocol.INTERNAL_ERROR, f"history incomplete ({missing} not found); retry later")
                return
            self._start_search(gap, "gap")
        elif self.seq.known:
            # Between the newest event known and the window's low offset, events may exist that the
            # projection has not reached yet (it lags): the tail will not show them again.
            front = self.seq.frontier()
            low = self._lows.get(front.after.partition) if front.after is not None else None
            if (
                front.after is not None
                and low is not None
                and front.after.offset + 1 < low
                and ("front", front.first_missing) not in self._searched
            ):
                self._start_search(front, "front")
        elif ("unknown", 0) not in self._searched and self._scan_timer is None:
            # Nothing known: most often the order is being created and its first event is about to arrive
            # live. If none does within the delay, search the log below the window once.
            loop = asyncio.get_running_loop()
            self._scan_timer = loop.call_later(self.gateway.options.log_scan_delay_s, self._scan_unknown)

    def _scan_unknown(self) -> None:
        self._scan_timer = None
        if not self._ended and not self.seq.known and not self._searching:
            self._start_search(self.seq.frontier(), "unknown")

    def _start_search(self, gap: Gap, kind: str) -> None:
        self._searched.add((kind, 0 if kind == "unknown" else gap.first_missing))
        self._searching = True
        self._lookup(self._begin_search, gap, kind)

    def _begin_search(self, gap: Gap, kind: str) -> None:
        self._search = asyncio.create_task(self._search_log(gap, kind), name="gateway-log-search")

    async def _search_log(self, gap: Gap, kind: str) -> None:
        """Search the order's partition between the newest event known below the gap and the first above
        (for an order never seen: below the window, through the key index)."""
        try:
            end: int | None
            if gap.before is not None:
                partition, end = gap.before.partition, gap.before.offset
            else:
                if gap.after is not None:
                    partition = gap.after.partition
                else:
                    # No event of the order known: its partition is the producers' choice for its key
                    # (murmur2 in Python, so computed only when needed).
                    partition = partition_for(self.order_id, self.gateway.tail.partitions)
                end = self._lows.get(partition)
            start = gap.after.offset + 1 if gap.after is not None else 0
            search = self.gateway.search
            found: list[Item] = []
            if end is not None and kind == "unknown":
                found = await search.find_new(self.order_id, partition, end=end)
            elif end is not None:
                found = await search.find(
                    self.order_id, partition, start=start, end=end, stop_seq=gap.first_missing
                )
            for item in found:
                self.seq.add(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("history search failed", extra={"order_id": self.order_id})
            self._end(protocol.INTERNAL_ERROR, f"gateway error: {type(exc).__name__}; retry with fromSeq")
            return
        finally:
            self._lookup_done()
        self._search = None
        self._searching = False
        if self.foreign:
            return
        self._pump()
        self._next()

    # -- output -----------------------------------------------------------------------------------------
    def _pump(self, live: Item | None = None) -> None:
        """Send what the sequencer has ready; `live` is the event that just arrived from the tail, whose
        frame's delivery lag the connection records (the others were history, or held behind a gap)."""
        if self._ended or self.foreign:
            return
        for item in self.seq.ready():
            if not self.owned:  # the sequencer hands out seq 1 first: the order's first event
                if item.account != self.account:
                    self._disown()
                    return
                self.owned = True
            if item.seq <= self.from_seq:
                continue
            live_at = item.occurred_at if item is live else None
            if not self.conn.push(item.frame, item.seq, live_at):
                self.stop()  # the connection is closing (too slow): its close says how to resume
                return
        if self.owned and self._not_found is not None:
            self._not_found.cancel()
            self._not_found = None
        if self.owned and self.seq.done and self.seq.terminal is not None:
            terminal = self.seq.terminal
            self._end(protocol.NORMAL, protocol.terminal_reason(terminal.status, terminal.seq))

    def _disown(self) -> None:
        """Another account's order: stop following it, send nothing, and let the not-found timeout end the
        stream as it ends one for an id that does not exist."""
        self.foreign = True
        self.gateway.hub.remove(self.order_id, self)
        if self._scan_timer is not None:
            self._scan_timer.cancel()
        if self._turn is not None:  # a look-up still waiting for its turn: nobody needs it now
            self.conn.lookups.withdraw(self._turn)
            self._turn = None
        if self._search is not None and self._search is not asyncio.current_task():
            self._search.cancel()

    def _give_up(self) -> None:
        self._not_found = None
        if not self.owned and not self._ended:
            self.gateway.stats["not_found"] += 1
            self._end(protocol.NOT_FOUND, protocol.not_found_reason(self.gateway.options.not_found_timeout_s))

    def _end(self, code: int, reason: str) -> None:
        if self._ended:
            return
        self.stop()
        self._on_end(self, code, reason)
