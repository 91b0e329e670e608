"""The venues' journals read by the checker itself: what each venue accepted and how each swap settled.

The simulated chain's truth is its journal (decision 0009): JSON lines `{"op": "accept", "data": receipt}`
and `{"op": "settle", "data": status, "pool": ...}`, one file per venue beside `VENUE_LEDGER_PATH`
(`ledger-raydium.jsonl`, `ledger-meteora.jsonl`). Parsed here with orjson, not through the venue's code.
A last line without its newline (a write cut by a SIGKILL) was never acknowledged, so it is left out, as the
venue's own replay does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson


@dataclass(frozen=True, slots=True)
class Settled:
    venue: str
    state: str  # confirmed or failed
    tx_hash: str | None
    executed_price: float | None
    amount_out: float | None


@dataclass
class Swaps:
    """Per client order id, across every venue of the chain."""

    accepted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # id -> venues
    settled: dict[str, list[Settled]] = field(default_factory=lambda: defaultdict(list))
    unreadable: list[str] = field(default_factory=list)

    def executions(self, client_order_id: str) -> list[Settled]:
        """The confirmed settlements of an id: a swap that executed (more than one: executed twice)."""
        return [s for s in self.settled.get(client_order_id, ()) if s.state == "confirmed"]

    def pending(self) -> list[str]:
        """Ids accepted and not (yet) settled."""
        return [cid for cid in self.accepted if not self.settled.get(cid)]


def journal_paths(ledger_path: Path) -> list[Path]:
    """The per-venue journals next to `VENUE_LEDGER_PATH` (`ledger.jsonl` -> `ledger-<venue>.jsonl`)."""
    suffix = ledger_path.suffix or ".jsonl"
    return sorted(ledger_path.parent.glob(f"{ledger_path.stem}-*{suffix}"))


def read_swaps(paths: list[Path]) -> Swaps:
    swaps = Swaps()
    for path in paths:
        venue = path.stem.rsplit("-", 1)[-1]
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a torn last line was never acknowledged
        for number, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                op, body = record["op"], record["data"]
                cid = str(body["client_order_id"])
                if op == "accept":
                    swaps.accepted[cid].append(venue)
                elif op == "settle":
                    swaps.settled[cid].append(
                        Settled(
                            venue,
                            str(body["state"]),
                            body.get("tx_hash"),
                            body.get("executed_price"),
                            body.get("amount_out"),
                        )
                    )
                else:
                    raise ValueError(f"unknown op {op!r}")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                swaps.unreadable.append(f"{path.name}:{number}: {exc}")
    return swaps
