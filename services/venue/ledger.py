"""The venue's ledger: one record per client order id, the venue's own truth about what it executed.

Journal first, memory after (decision 0009). With a journal, `accept` and `settle` return a future that
is done once the record is on disk *and* applied here; until then `get` does not see the swap (or its
settlement), so no receipt, status, settlement or pool move is ever shown that a crash could take back, and
a failed write (`JournalError`) leaves the ledger as it was. Without a journal they apply at once.

Replay at start rebuilds the records, the entries and settlements written per id, and the pool state each
confirmed swap left behind (the venue resumes pricing from it). A swap settled in the journal stays settled
and is never settled again; one still pending is settled once by the venue that replays it.

`entries` and `settlements` count what was actually written per id, so a test can check "at most once"
against the record of events rather than against the dict that would hide a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .interface import SubmitReceipt, SwapState, SwapStatus
from .journal import Journal, JournalError, JournalFile, OsFile, read_lines
from .pool import PoolState
from .wire import from_json

T = TypeVar("T")

log = logging.getLogger(__name__)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_CHUNK = 58**10
_B58_PAIRS = [a + b for a in _B58 for b in _B58]  # two base58 digits per small division


def tx_hash(seed: object, venue: str, client_order_id: str) -> str:
    """A Solana-style signature (base58 of 64 bytes), derived from the id so a replay yields the same one."""
    n = int.from_bytes(hashlib.sha512(f"{seed}:{venue}:{client_order_id}".encode()).digest(), "big")
    out: list[str] = []
    while n:  # ten digits per big-integer division, the rest in machine-size ints
        n, chunk = divmod(n, _B58_CHUNK)
        for _ in range(5):
            chunk, pair = divmod(chunk, 3364)
            out.append(_B58_PAIRS[pair])
    return "".join(reversed(out)).lstrip("1") or "1"


@dataclass(slots=True)
class SwapRecord:
    receipt: SubmitReceipt
    visible_at: float = 0.0  # monotonic time from which `status` shows the swap (delayed-visibility fault)
    state: SwapState = "pending"
    executed_price: float | None = None
    amount_out: float | None = None
    reason: str | None = None
    settled_at: datetime | None = None

    def status(self) -> SwapStatus:
        r = self.receipt
        return SwapStatus(
            r.venue,
            r.client_order_id,
            self.state,
            r.tx_hash,
            self.executed_price,
            self.amount_out,
            self.reason,
            self.settled_at,
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one pending swap ends, as the venue priced it: journaled first, then applied to its record."""

    record: SwapRecord
    state: SwapState
    settled_at: datetime
    executed_price: float | None = None
    amount_out: float | None = None
    reason: str | None = None
    pool: PoolState | None = None  # the pool just after a confirmed swap: where a restart resumes pricing

    def status(self) -> SwapStatus:
        r = self.record.receipt
        return SwapStatus(
            r.venue,
            r.client_order_id,
            self.state,
            r.tx_hash,
            self.executed_price,
            self.amount_out,
            self.reason,
            self.settled_at,
        )


class Ledger:
    def __init__(
        self, journal: Path | None = None, *, open_file: Callable[[Path], JournalFile] = OsFile
    ) -> None:
        self._records: dict[str, SwapRecord] = {}
        self._entries: Counter[str] = Counter()
        self._settlements: Counter[str] = Counter()
        # Per pool, the state the last confirmed swap in the journal left it in, and when.
        self.pool_states: dict[tuple[str, str], tuple[PoolState, datetime]] = {}
        # Pools listed after the venue started (an admin's listing), in journal order, with when.
        self.listings: dict[tuple[str, str], tuple[PoolState, datetime]] = {}
        self._journal: Journal | None = None
        self._closed = False
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._replay(journal)
            self._journal = Journal(open_file(journal), f"ledger {journal.name}")

    def get(self, client_order_id: str) -> SwapRecord | None:
        return self._records.get(client_order_id)

    def accept(
        self,
        receipt: SubmitReceipt,
        visible_at: float = 0.0,
        on_durable: Callable[[SwapRecord], None] | None = None,
    ) -> asyncio.Future[SwapRecord]:
        """Journal the acceptance, then add the swap and call `on_durable(record)` (both skipped, and the
        future failed with `JournalError`, if the write fails)."""
        cid = receipt.client_order_id
        if cid in self._records:
            raise KeyError(f"{cid} is already in the ledger")

        def apply() -> SwapRecord:
            record = SwapRecord(receipt, visible_at)
            self._records[cid] = record
            self._entries[cid] += 1
            if on_durable is not None:
                on_durable(record)
            return record

        return self._commit(lambda: _line("accept", receipt), apply)

    def settle(
        self, settlements: Sequence[Settlement], on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Journal a batch of settlements (one write), then apply them and call `on_durable()`."""
        for s in settlements:
            if s.record.state != "pending":
                raise ValueError(f"{s.record.receipt.client_order_id} is already {s.record.state}")

        def apply() -> None:
            for s in settlements:
                record = s.record
                record.state, record.settled_at = s.state, s.settled_at
                record.executed_price, record.amount_out, record.reason = (
                    s.executed_price,
                    s.amount_out,
                    s.reason,
                )
                self._settlements[record.receipt.client_order_id] += 1
            if on_durable is not None:
                on_durable()

        return self._commit(
            lambda: b"".join(_line("settle", s.status(), pool=s.pool) for s in settlements), apply
        )

    def list_pool(
        self, state: PoolState, at: datetime, on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Journal a new pool's listing, then remember it and call `on_durable()`: a restarted venue lists it
        again before it restores the pools' states."""
        key = (state.token_a, state.token_b)
        if key in self.listings:
            raise KeyError(f"{state.token_a}/{state.token_b} is listed already")

        def apply() -> None:
            self.listings[key] = (state, at)
            if on_durable is not None:
                on_durable()

        return self._commit(lambda: _line("list", state, at=at.isoformat()), apply)

    def entries(self, client_order_id: str) -> int:
        return self._entries[client_order_id]

    def settlements(self, client_order_id: str) -> int:
        return self._settlements[client_order_id]

    def pending(self) -> list[SwapRecord]:
        return [r for r in self._records.values() if r.state == "pending"]

    def records(self) -> list[SwapRecord]:
        return list(self._records.values())

    def max_entries(self) -> int:
        """The most entries any one client order id has (1 when the at-most-once rule holds)."""
        return max(self._entries.values(), default=0)

    @property
    def backlog(self) -> int:
        """Records waiting for the journal's next write (0 without a journal)."""
        return self._journal.backlog if self._journal is not None else 0

    def __len__(self) -> int:
        return len(self._records)

    async def aclose(self) -> None:
        """Finish the journal writes already started, then close the file; later writes are refused."""
        self._closed = True
        if self._journal is not None:
            await self._journal.aclose()

    def _commit(self, encode: Callable[[], bytes], apply: Callable[[], T]) -> asyncio.Future[T]:
        if self._closed:
            raise JournalError("ledger closed")
        if self._journal is not None:  # encoded only when journaling: it is most of an accept's cost
            return self._journal.append(encode(), apply)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.set_result(apply())
        return future

    def _replay(self, path: Path) -> None:
        for number, raw in read_lines(path):
            try:
                line = orjson.loads(raw)
                op, data = line["op"], line["data"]
                if op == "accept":
                    self._replay_accept(from_json(SubmitReceipt, data))
                elif op == "settle":
                    self._replay_settle(from_json(SwapStatus, data), line.get("pool"))
                elif op == "list":
                    state = from_json(PoolState, data)
                    at = datetime.fromisoformat(line["at"])
                    self.listings.setdefault((state.token_a, state.token_b), (state, at))
                else:
                    raise ValueError(f"unknown op {op!r}")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("ledger journal %s line %d skipped: %s", path, number, exc)

    def _replay_accept(self, receipt: SubmitReceipt) -> None:
        cid = receipt.client_order_id
        self._entries[cid] += 1
        if cid in self._records:  # only a journal written before decision 0009 can hold this
            log.warning("ledger journal: %s accepted again; the first receipt stands", cid)
            return
        self._records[cid] = SwapRecord(receipt)

    def _replay_settle(self, status: SwapStatus, pool: Any) -> None:
        record = self._records[status.client_order_id]
        self._settlements[status.client_order_id] += 1
        if record.state != "pending":  # the first settlement is the one anyone was told about
            log.warning(
                "ledger journal: %s settled again; the first settlement stands", status.client_order_id
            )
            return
        record.state, record.settled_at = status.state, status.settled_at
        record.executed_price, record.amount_out, record.reason = (
            status.executed_price,
            status.amount_out,
            status.reason,
        )
        if pool is not None and status.settled_at is not None:
            state = from_json(PoolState, pool)
            self.pool_states[(state.token_a, state.token_b)] = (state, status.settled_at)


def _line(op: str, data: Any, **extra: Any) -> bytes:
    body = {"op": op, "data": data}
    body.update({k: v for k, v in extra.items() if v is not None})
    return orjson.dumps(body) + b"\n"
