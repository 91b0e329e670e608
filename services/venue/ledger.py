"""The venue's ledger: one record per client order id, the venue's own truth about what it executed.

The ledger outlives the router (the venue is its own process), and with a journal path it also outlives the
venue process: every acceptance and settlement is appended as one JSON line and replayed at start. Lines are
flushed, not fsynced: this is a simulator, and a torn last line is skipped on replay.

`entries` and `settlements` count what was actually written per id, so a test can check "at most once"
against the record of events rather than against the dict that would hide a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from .interface import SubmitReceipt, SwapState, SwapStatus
from .wire import from_json

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


class Ledger:
    def __init__(self, journal: Path | None = None) -> None:
        self._records: dict[str, SwapRecord] = {}
        self._entries: Counter[str] = Counter()
        self._settlements: Counter[str] = Counter()
        self._journal: IO[bytes] | None = None
        if journal is not None:
            if journal.exists():
                self._replay(journal)
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._journal = journal.open("ab")

    def get(self, client_order_id: str) -> SwapRecord | None:
        return self._records.get(client_order_id)

    def accept(self, receipt: SubmitReceipt, visible_at: float = 0.0) -> SwapRecord:
        if receipt.client_order_id in self._records:
            raise KeyError(f"{receipt.client_order_id} is already in the ledger")
        record = SwapRecord(receipt, visible_at)
        self._records[receipt.client_order_id] = record
        self._entries[receipt.client_order_id] += 1
        self._write("accept", receipt)
        return record

    def settle(
        self,
        record: SwapRecord,
        state: SwapState,
        settled_at: datetime,
        executed_price: float | None = None,
        amount_out: float | None = None,
        reason: str | None = None,
    ) -> None:
        if record.state != "pending":
            raise ValueError(f"{record.receipt.client_order_id} is already {record.state}")
        record.state, record.settled_at = state, settled_at
        record.executed_price, record.amount_out, record.reason = executed_price, amount_out, reason
        self._settlements[record.receipt.client_order_id] += 1
        self._write("settle", record)

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

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _write(self, op: str, item: SubmitReceipt | SwapRecord) -> None:
        if self._journal is not None:  # built only when journaling: encoding is most of an accept's cost
            data = item if isinstance(item, SubmitReceipt) else item.status()
            self._journal.write(orjson.dumps({"op": op, "data": data}) + b"\n")
            self._journal.flush()

    def _replay(self, path: Path) -> None:
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = orjson.loads(raw)
                    op, data = line["op"], line["data"]
                    if op == "accept":
                        receipt = from_json(SubmitReceipt, data)
                        self._records[receipt.client_order_id] = SwapRecord(receipt)
                        self._entries[receipt.client_order_id] += 1
                    elif op == "settle":
                        status = from_json(SwapStatus, data)
                        record = self._records[status.client_order_id]
                        self._settlements[status.client_order_id] += 1
                        self._records[status.client_order_id] = replace(
                            record,
                            state=status.state,
                            executed_price=status.executed_price,
                            amount_out=status.amount_out,
                            reason=status.reason,
                            settled_at=status.settled_at,
                        )
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.warning("ledger journal %s line %d skipped: %s", path, number, exc)
