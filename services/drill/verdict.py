"""The checker: everything the drill gathered, compared. Pure.

What must be zero, and how each is counted (one order counts once per line, whatever else is wrong with it):

- **valid orders refused**: a valid order answered with a 4xx other than 409/429 (which are retried);
- **lost**: an order acknowledged with a 201 that has no terminal event in the log;
- **duplicated**: an order with two lifecycles (a second `OrderRequested`, a seq written twice, two terminal
  events) or two executions (accepted twice across the venues, or settled twice);
- **log broken**: an order whose events skip a seq, take a step the lifecycle does not allow, or break the
  causation chain; an order the router admitted (its client never got the 201) that never ended; records
  of the log or the venue journals that cannot be read;
- **executions != confirmations**: confirmed in the log but not executed by the venue (or executed with
  another venue, hash, price or amount), executed but failed or unfinished in the log, accepted and never
  settled, or a venue swap for an order the log does not have;
- **projection != fold**: the `orders` row differs from the checker's fold of the log, the `order_events`
  rows differ from the log's events, or a row has no order in the log;
- **WebSocket gaps**: a subscriber's frames of an order the log has differ from its events (a missing, repeated,
  reordered or unknown seq, or a stream that never reached its terminal frame);
- **faults not injected**: an injection that failed, or a kind of the plan never injected;
- **not recovered**: a fault after which no acknowledged order completed within the drill's deadline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.drill.fold import LoggedEvent, expected_row, lifecycle, row_differences
from services.drill.ledgers import Swaps
from services.drill.recovery import Completions


@dataclass(frozen=True)
class Stream:
    """One subscriber's view of one order: the frames' (seq, type) in arrival order."""

    subscriber: int
    order_id: str
    frames: tuple[tuple[int, str], ...]
    ended: bool  # its terminal frame arrived


@dataclass(frozen=True)
class FaultRecord:
    kind: str
    target: str
    injected_at: float  # wall clock
    healed_at: float  # when the drill undid it (the injection itself, for a kill)
    error: str | None = None  # the injection failed
    unrecovered: str | None = None  # set when no order completed after it within the deadline


@dataclass
class Evidence:
    completions: Completions
    events: dict[str, list[LoggedEvent]]  # by order id, in log order
    undecodable: list[str]
    swaps: Swaps
    rows: dict[str, dict[str, Any]]  # order id -> the `orders` row (ROW_FIELDS)
    event_rows: dict[str, list[tuple[int, str, str]]]  # order id -> [(seq, event_id, type)] of order_events
    streams: list[Stream]
    faults: list[FaultRecord]
    planned: Sequence[str]  # the fault kinds the plan holds
    answers: Counter[str] = field(default_factory=Counter)  # what clients were answered, by status or error
    gave_up: int = 0  # orders whose client found no definitive answer before its deadline
    refused: list[str] = field(
        default_factory=list
    )  # valid orders answered with a 4xx retrying cannot change


@dataclass(frozen=True)
class KindRecovery:
    injected: int
    longest_first_s: float | None
    longest_all_s: float | None
    unmeasured: int  # faults of this kind whose recovery the drill could not see (no order after them)


@dataclass
class Verdict:
    acknowledged: int
    logged_orders: int
    unacknowledged_in_log: int
    answers: Counter[str]
    gave_up: int
    refused: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    executions: list[str] = field(default_factory=list)
    projection: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    not_injected: list[str] = field(default_factory=list)
    unrecovered: list[str] = field(default_factory=list)
    recovery: dict[str, KindRecovery] = field(default_factory=dict)
    streams: int = 0
    executed: int = 0
    confirmed: int = 0
    failed: int = 0

    def failures(self) -> dict[str, list[str]]:
        """Every line that must be empty, with what is in it."""
        return {
            "valid orders refused": self.refused,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "log broken": self.broken,
            "executions != confirmations": self.executions,
            "projection != fold": self.projection,
            "WebSocket gaps": self.gaps,
            "faults not injected": self.not_injected,
            "not recovered": self.unrecovered,
        }

    @property
    def ok(self) -> bool:
        return not any(self.failures().values())


def judge(evidence: Evidence) -> Verdict:
    ev = evidence
    acked = ev.completions.acked
    verdict = Verdict(
        acknowledged=len(acked),
        logged_orders=len(ev.events),
        unacknowledged_in_log=len(set(ev.events) - set(acked)),
        answers=ev.answers,
        gave_up=ev.gave_up,
        streams=len(ev.streams),
        refused=list(ev.refused),
    )
    lifecycles = {order: lifecycle(events) for order, events in ev.events.items()}
    verdict.broken.extend(ev.undecodable)
    for order, life in sorted(lifecycles.items()):
        if life.duplicated:
            verdict.duplicated.append(
                f"{order}: {life.requested} requests, {life.terminals} terminal events, "
                f"seqs written twice {list(life.repeated_seqs)}"
            )
        if life.broken:
            verdict.broken.append(f"{order}: {'; '.join(life.broken)}")
        verdict.confirmed += life.final == "OrderConfirmed"
        verdict.failed += life.final == "OrderFailed"
    for order in sorted(acked):
        seen = lifecycles.get(order)
        if seen is None or seen.terminals == 0:
            verdict.lost.append(f"{order}: {'no event' if seen is None else 'no terminal event'} in the log")
    for order in sorted(set(lifecycles) - set(acked)):  # never acknowledged, but once admitted it must end
        if lifecycles[order].terminals == 0:
            verdict.broken.append(f"{order}: admitted (not acknowledged) and never ended")
    _executions(ev, lifecycles, verdict)
    _projection(ev, verdict)
    _streams(ev, verdict)
    _faults(ev, verdict)
    return verdict


def _executions(ev: Evidence, lifecycles: dict[str, Any], verdict: Verdict) -> None:
    swaps: Swaps = ev.swaps
    for cid in sorted(set(swaps.accepted) | set(swaps.settled)):
        accepted, settled = swaps.accepted.get(cid, []), swaps.settled.get(cid, [])
        if len(accepted) > 1 or len(settled) > 1:
            verdict.duplicated.append(f"{cid}: accepted by {accepted}, settled {len(settled)} times")
    verdict.executed = sum(1 for cid in swaps.settled if swaps.executions(cid))
    verdict.broken.extend(f"venue journal {line}" for line in swaps.unreadable)
    for order in sorted(set(ev.events) | set(swaps.accepted) | set(swaps.settled)):
        events = ev.events.get(order, [])
        life = lifecycles.get(order)
        executions = swaps.executions(order)
        final = life.final if life else None
        if not events:
            verdict.executions.append(f"{order}: the venue has a swap for an order the log does not have")
        elif final == "OrderConfirmed":
            terminal = events[-1].data
            if not executions:
                verdict.executions.append(f"{order}: confirmed in the log, not executed by any venue")
                continue
            done = executions[0]
            seen = (done.venue, done.tx_hash, done.executed_price, done.amount_out)
            said = (
                terminal.get("venue"),
                terminal.get("tx_hash"),
                terminal.get("executed_price"),
                terminal.get("amount_out"),
            )
            if seen != said:
                verdict.executions.append(f"{order}: the log says {said}, the venue {seen}")
        elif executions:
            verdict.executions.append(
                f"{order}: executed by {executions[0].venue}, {final or 'unfinished'} in the log"
            )
        if order in swaps.accepted and not swaps.settled.get(order):
            verdict.executions.append(f"{order}: accepted by {swaps.accepted[order]} and never settled")


def _projection(ev: Evidence, verdict: Verdict) -> None:
    for order, events in sorted(ev.events.items()):
        firsts = list({e.seq: e for e in reversed(events)}.values())[::-1]
        wrong = row_differences(expected_row(firsts), ev.rows.get(order))
        expected_events = [(e.seq, e.event_id, e.type) for e in firsts]
        if ev.event_rows.get(order, []) != expected_events:
            wrong.append(f"order_events {ev.event_rows.get(order, [])} != {expected_events}")
        if wrong:
            verdict.projection.append(f"{order}: {'; '.join(wrong)}")
    for order in sorted(set(ev.rows) - set(ev.events)):
        verdict.projection.append(f"{order}: a row without events in the log")


def _streams(ev: Evidence, verdict: Verdict) -> None:
    for stream in ev.streams:
        events = ev.events.get(stream.order_id, [])
        if not events:
            continue  # an order the log does not have is lost (its own line), not a gap in a stream
        expected = tuple((e.seq, e.type) for e in {e.seq: e for e in reversed(events)}.values())[::-1]
        if stream.frames != expected or not stream.ended:
            got = [seq for seq, _ in stream.frames]
            verdict.gaps.append(
                f"subscriber {stream.subscriber}, order {stream.order_id}: frames {got} of {len(expected)}"
                + ("" if stream.ended else ", never ended")
            )


def _faults(ev: Evidence, verdict: Verdict) -> None:
    by_kind: dict[str, list[FaultRecord]] = defaultdict(list)
    for fault in ev.faults:
        if fault.error:
            verdict.not_injected.append(f"{fault.kind} ({fault.target}): {fault.error}")
            continue
        by_kind[fault.kind].append(fault)
        if fault.unrecovered:
            verdict.unrecovered.append(f"{fault.kind} ({fault.target}): {fault.unrecovered}")
    for kind in dict.fromkeys(ev.planned):
        if not by_kind.get(kind):
            verdict.not_injected.append(f"{kind}: planned, never injected")
    for kind, faults in by_kind.items():
        measured = [ev.completions.recovered(f.injected_at) for f in faults]
        firsts = [m.first_s for m in measured if m.first_s is not None]
        alls = [m.all_s for m in measured if m.all_s is not None]
        verdict.recovery[kind] = KindRecovery(
            injected=len(faults),
            longest_first_s=max(firsts) if firsts else None,
            longest_all_s=max(alls) if alls else None,
            unmeasured=sum(1 for m in measured if m.all_s is None),
        )
