"""One order stream's ordering rule, pure: events arrive from several sources, in any order, repeated;
frames leave in seq order, each once, with no gap.

The sources are the recent events kept from the log tail, PostgreSQL's `order_events`, a search of the log
and the live tail. A `Sequencer` takes items from any of them (`add`), hands out the next contiguous run
(`ready`), and names what is missing (`gap`) so the caller can fetch exactly that. It never skips a seq:
a missing one holds back everything after it until it is found (or the stream is closed with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.frames import Item

__all__ = ["Gap", "Overflow", "Sequencer"]


class Overflow(Exception):
    """More events are held back behind a missing seq than the limit allows."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs `first_missing` .. `before.seq - 1` are missing; `before` is the first item held back.

    `after` is the newest item at or below the last sent seq, when one was seen: the missing events lie
    between `after.offset` and `before.offset` in the order's partition, which bounds a search of the log.
    """

    first_missing: int
    before: Item | None
    after: Item | None


class Sequencer:
    def __init__(self, from_seq: int = 0, limit: int = 1000) -> None:
        self.last = from_seq  # the highest seq handed out (or the client's fromSeq)
        self.known = False  # any event of the order seen, from any source
        self.terminal: Item | None = None  # the order's terminal event, once seen
        self._ahead: dict[int, Item] = {}
        self._floor: Item | None = None  # newest item seen with seq <= last
        self._limit = limit

    def add(self, item: Item) -> None:
        """Take one event; duplicates and seqs already handed out are dropped."""
        self.known = True
        if item.terminal:
            self.terminal = item
        if item.seq <= self.last:
            if self._floor is None or item.seq > self._floor.seq:
                self._floor = item
            return
        if item.seq in self._ahead:
            return
        if len(self._ahead) >= self._limit:
            raise Overflow(f"{len(self._ahead)} events held back behind seq {self.last + 1}")
        self._ahead[item.seq] = item

    def ready(self) -> list[Item]:
        """The contiguous run after the last seq handed out; it counts as handed out from now on."""
        run: list[Item] = []
        while (item := self._ahead.pop(self.last + 1, None)) is not None:
            run.append(item)
            self.last = item.seq
            self._floor = item
        return run

    @property
    def done(self) -> bool:
        """The terminal event has been handed out (or the client had it already)."""
        return self.terminal is not None and self.last >= self.terminal.seq

    def gap(self) -> Gap | None:
        """What is missing before the events held back, or None when nothing is held back."""
        if not self._ahead:
            return None
        before = self._ahead[min(self._ahead)]
        return Gap(self.last + 1, before, self._floor)

    def frontier(self) -> Gap:
        """Everything after the last seq handed out is unknown: a gap open towards the future."""
        return Gap(self.last + 1, None, self._floor)
