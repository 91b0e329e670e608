"""The checker's own reading of the order event log: JSON records parsed here, each order's events checked
against the lifecycle, and folded into the row the projection should hold. Pure.

It deliberately shares no code with the services (not `events.codec`, not `events.lifecycle`, not the
projector's fold): a bug there must not hide itself by agreeing with itself. What it knows of the contract
is what docs/events.md says: the envelope, the five steps of a market order, and what each event carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

STATUS: dict[str, str] = {
    "OrderRequested": "pending",
    "OrderRouting": "routing",
    "OrderBuilding": "building",
    "OrderSubmitted": "submitted",
    "OrderConfirmed": "confirmed",
    "OrderFailed": "failed",
}
TERMINAL = frozenset({"OrderConfirmed", "OrderFailed"})
# A market order's steps: what may follow each event (None: the order's first event).
NEXT: dict[str | None, frozenset[str]] = {
    None: frozenset({"OrderRequested"}),
    "OrderRequested": frozenset({"OrderRouting", "OrderFailed"}),
    "OrderRouting": frozenset({"OrderBuilding", "OrderFailed"}),
    "OrderBuilding": frozenset({"OrderSubmitted", "OrderFailed"}),
    "OrderSubmitted": frozenset({"OrderConfirmed", "OrderFailed"}),
}


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One record of the event log as the checker read it."""

    order_id: str
    seq: int
    type: str
    event_id: str
    causation_id: str | None
    data: dict[str, Any]
    partition: int
    offset: int
    seen_at: float  # wall clock when the checker's consumer returned it


def parse(value: bytes, partition: int, offset: int, seen_at: float) -> LoggedEvent:
    """A log record's JSON; ValueError when it is not an event envelope."""
    try:
        raw = orjson.loads(value)
        return LoggedEvent(
            order_id=str(raw["order_id"]),
            seq=int(raw["seq"]),
            type=str(raw["type"]),
            event_id=str(raw["event_id"]),
            causation_id=None if raw.get("causation_id") is None else str(raw["causation_id"]),
            data=dict(raw["data"]),
            partition=partition,
            offset=offset,
            seen_at=seen_at,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"partition {partition} offset {offset}: not an event ({exc})") from None


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """What one order's events say, and what is wrong with them."""

    requested: int  # OrderRequested events (2+: two lifecycles)
    terminals: int
    repeated_seqs: tuple[int, ...]  # seqs written more than once
    broken: tuple[str, ...]  # gaps, illegal steps, a broken causation chain
    final: str | None  # the terminal event's type, when there is exactly one and it is last

    @property
    def duplicated(self) -> bool:
        return self.requested > 1 or self.terminals > 1 or bool(self.repeated_seqs)


def lifecycle(events: Sequence[LoggedEvent]) -> Lifecycle:
    """Check one order's events, in log order, against the market-order lifecycle."""
    requested = sum(1 for e in events if e.type == "OrderRequested")
    terminals = sum(1 for e in events if e.type in TERMINAL)
    per_seq = Counter(e.seq for e in events)
    repeated = sorted(seq for seq, n in per_seq.items() if n > 1)
    # The steps are checked on each seq's first copy: a repeat is a duplicate, counted above, not a gap.
    firsts = list({e.seq: e for e in reversed(events)}.values())[::-1]
    broken: list[str] = []
    previous: LoggedEvent | None = None
    for expected_seq, event in enumerate(firsts, 1):
        if event.seq != expected_seq:
            broken.append(f"seq {event.seq} where {expected_seq} was due")
            break
        if event.type not in NEXT.get(previous.type if previous else None, frozenset()):
            broken.append(f"{event.type} after {previous.type if previous else 'nothing'}")
            break
        if previous is not None and event.causation_id != previous.event_id:
            broken.append(f"seq {event.seq} not caused by seq {previous.seq}")
            break
        previous = event
    final = events[-1].type if events and events[-1].type in TERMINAL and terminals == 1 else None
    return Lifecycle(requested, terminals, tuple(repeated), tuple(broken), final)


# The `orders` columns the checker derives from the log, and how the projection names them.
ROW_FIELDS: tuple[str, ...] = (
    "status", "last_seq", "last_event_id", "base_token", "quote_token", "side", "amount_in", "slippage_bps",
    "account_id", "idempotency_key", "selected_dex", "client_order_id", "tx_hash", "executed_price",
    "amount_out", "failure_reason", "failure_stage", "last_partition", "last_offset",
)  # fmt: skip


def expected_row(events: Sequence[LoggedEvent]) -> dict[str, Any]:
    """The `orders` row a projection of these events must hold (the fields of `ROW_FIELDS`)."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    for e in events:
        d = e.data
        row.update(status=STATUS.get(e.type), last_seq=e.seq, last_event_id=e.event_id)
        row.update(last_partition=e.partition, last_offset=e.offset)
        if e.type == "OrderRequested":
            row.update(
                base_token=d.get("base_token"),
                quote_token=d.get("quote_token"),
                side=d.get("side"),
                amount_in=d.get("amount_in"),
                slippage_bps=d.get("slippage_bps"),
                account_id=d.get("account_id", "local"),  # version 1 events belong to `local`
                idempotency_key=d.get("idempotency_key"),
            )
        elif e.type == "OrderBuilding":
            row["selected_dex"] = d.get("selected_venue")
        elif e.type == "OrderSubmitted":
            row.update(selected_dex=d.get("venue"), client_order_id=d.get("client_order_id"))
        elif e.type == "OrderConfirmed":
            row.update(
                selected_dex=d.get("venue"),
                client_order_id=d.get("client_order_id"),
                tx_hash=d.get("tx_hash"),
                executed_price=d.get("executed_price"),
                amount_out=d.get("amount_out"),
            )
        elif e.type == "OrderFailed":
            row.update(failure_reason=d.get("reason"), failure_stage=d.get("stage"))
            row["selected_dex"] = d.get("venue") or row["selected_dex"]
            row["client_order_id"] = d.get("client_order_id") or row["client_order_id"]
    return row


def row_differences(expected: dict[str, Any], actual: dict[str, Any] | None) -> list[str]:
    """The fields where a projected row differs from the fold (all of them when there is no row)."""
    if actual is None:
        return ["no row"]
    return [f"{k}: {actual.get(k)!r} != {v!r}" for k, v in expected.items() if actual.get(k) != v]
