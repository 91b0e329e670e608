"""The drill's checker catches what it is there to catch: each kind of damage, made on purpose in otherwise
good evidence, shows on its own line, and good evidence passes. Pure: no broker, no database."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import orjson
import pytest

from services.drill.fold import LoggedEvent, expected_row, lifecycle, parse
from services.drill.ledgers import Settled, Swaps
from services.drill.recovery import Completions
from services.drill.verdict import Evidence, FaultRecord, Stream, Verdict, judge

T0 = 1_000_000.0


def order_events(
    order_id: str, partition: int = 0, offset: int = 0, confirmed: bool = True
) -> list[LoggedEvent]:
    steps: list[tuple[str, dict[str, object]]] = [
        ("OrderRequested", {"base_token": "SOL", "quote_token": "USDC", "side": "sell", "amount_in": 1.5,
                            "slippage_bps": 100, "idempotency_key": f"k-{order_id}", "account_id": "local",
                            "order_type": "market", "request_hash": None}),
        ("OrderRouting", {"attempt": 1}),
        ("OrderBuilding", {"quotes": [], "selected_venue": "meteora", "reason": "r", "attempts": 1}),
        ("OrderSubmitted", {"venue": "meteora", "client_order_id": order_id, "expected_price": 150.0,
                            "min_acceptable_price": 148.5, "slippage_bps": 100, "valid_until": None}),
    ]  # fmt: skip
    if confirmed:
        steps.append(
            ("OrderConfirmed", {"venue": "meteora", "tx_hash": f"tx-{order_id}", "executed_price": 149.9,
                                "amount_in": 1.5, "amount_out": 224.85, "client_order_id": order_id})
        )  # fmt: skip
    else:
        steps.append(
            ("OrderFailed", {"reason": "slippage", "stage": "execution", "attempts": 1, "venue": "meteora",
                             "client_order_id": order_id})
        )  # fmt: skip
    events, cause = [], None
    for seq, (kind, data) in enumerate(steps, 1):
        event_id = str(uuid.uuid4())
        events.append(
            LoggedEvent(order_id, seq, kind, event_id, cause, data, partition, offset + seq, T0 + seq)
        )
        cause = event_id
    return events


def good(orders: int = 3, subscribers: bool = True) -> Evidence:
    completions = Completions(partitions=2)
    events, swaps, rows, event_rows, streams = {}, Swaps(), {}, {}, []
    for n in range(orders):
        oid = str(uuid.uuid4())
        log = order_events(oid, partition=n % 2, offset=10 * n, confirmed=n != 1)
        events[oid] = log
        completions.ack(oid, n % 2, T0)
        completions.logged[oid] = completions.projected[oid] = T0 + 6
        swaps.accepted[oid].append("meteora")
        last = log[-1].data
        if n != 1:
            settled = Settled(
                "meteora", "confirmed", last["tx_hash"], last["executed_price"], last["amount_out"]
            )  # type: ignore[arg-type]
        else:
            settled = Settled("meteora", "failed", f"tx-{oid}", None, None)
        swaps.settled[oid].append(settled)
        rows[oid] = expected_row(log)
        event_rows[oid] = [(e.seq, e.event_id, e.type) for e in log]
        if subscribers:
            completions.followed.add(oid)
            completions.streamed[oid] = T0 + 7
            streams.append(Stream(n % 2, oid, tuple((e.seq, e.type) for e in log), True))
    faults = [FaultRecord("kill-router", "router pid 1", T0 - 1, T0 - 1)]
    return Evidence(completions, events, [], swaps, rows, event_rows, streams, faults, ["kill-router"])


def first(evidence: Evidence) -> str:
    return next(iter(evidence.events))


def test_good_evidence_passes_with_its_counts() -> None:
    verdict = judge(good())
    assert verdict.ok, verdict.failures()
    assert (verdict.acknowledged, verdict.confirmed, verdict.failed, verdict.executed) == (3, 2, 1, 2)
    assert verdict.recovery["kill-router"].longest_first_s == pytest.approx(8.0)
    assert verdict.recovery["kill-router"].longest_all_s == pytest.approx(8.0)


def lose_terminal(ev: Evidence) -> None:
    oid = first(ev)
    ev.events[oid] = ev.events[oid][:-1]


def write_twice(ev: Evidence) -> None:
    oid = first(ev)
    ev.events[oid] = [*ev.events[oid], ev.events[oid][-1]]


def second_lifecycle(ev: Evidence) -> None:
    oid = first(ev)
    ev.events[oid] = ev.events[oid] + [dataclasses.replace(e, seq=e.seq + 5) for e in ev.events[oid]]


def execute_twice(ev: Evidence) -> None:
    oid = first(ev)
    ev.swaps.accepted[oid].append("raydium")


def skip_a_seq(ev: Evidence) -> None:
    oid = first(ev)
    events = ev.events[oid]
    ev.events[oid] = [events[0], *events[2:]]


def confirm_without_execution(ev: Evidence) -> None:
    del ev.swaps.settled[first(ev)]


def execute_a_failed_order(ev: Evidence) -> None:
    failed = list(ev.events)[1]
    ev.swaps.settled[failed] = [Settled("meteora", "confirmed", "tx", 1.0, 1.0)]


def other_price(ev: Evidence) -> None:
    oid = first(ev)
    ev.swaps.settled[oid] = [dataclasses.replace(ev.swaps.settled[oid][0], executed_price=1.0)]


def stale_row(ev: Evidence) -> None:
    ev.rows[first(ev)]["status"] = "submitted"


def missing_event_row(ev: Evidence) -> None:
    ev.event_rows[first(ev)].pop()


def frame_missing(ev: Evidence) -> None:
    s = ev.streams[0]
    ev.streams[0] = dataclasses.replace(s, frames=s.frames[:2] + s.frames[3:])


def frame_repeated(ev: Evidence) -> None:
    s = ev.streams[0]
    ev.streams[0] = dataclasses.replace(s, frames=(*s.frames[:3], s.frames[2], *s.frames[3:]))


def stream_never_ended(ev: Evidence) -> None:
    s = ev.streams[0]
    ev.streams[0] = dataclasses.replace(s, frames=s.frames[:-1], ended=False)


def fault_not_injected(ev: Evidence) -> None:
    ev.planned = ["kill-router", "pause-broker"]


def fault_not_recovered(ev: Evidence) -> None:
    ev.faults[0] = dataclasses.replace(ev.faults[0], unrecovered="no order completed")


def order_refused(ev: Evidence) -> None:
    ev.refused.append("drill-1: 422")


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (lose_terminal, "lost"),
        (write_twice, "duplicated"),
        (second_lifecycle, "duplicated"),
        (execute_twice, "duplicated"),
        (skip_a_seq, "log broken"),
        (confirm_without_execution, "executions != confirmations"),
        (execute_a_failed_order, "executions != confirmations"),
        (other_price, "executions != confirmations"),
        (stale_row, "projection != fold"),
        (missing_event_row, "projection != fold"),
        (frame_missing, "WebSocket gaps"),
        (frame_repeated, "WebSocket gaps"),
        (stream_never_ended, "WebSocket gaps"),
        (fault_not_injected, "faults not injected"),
        (fault_not_recovered, "not recovered"),
        (order_refused, "valid orders refused"),
    ],
)
def test_each_damage_shows_on_its_line(damage: Callable[[Evidence], None], line: str) -> None:
    evidence = good()
    damage(evidence)
    verdict: Verdict = judge(evidence)
    assert not verdict.ok
    assert verdict.failures()[line], verdict.failures()


def test_a_lifecycle_is_read_from_the_log_records_own_json() -> None:
    events = order_events(str(uuid.uuid4()))
    raw = {
        "type": events[0].type, "event_id": events[0].event_id, "order_id": events[0].order_id, "seq": 1,
        "occurred_at": "2025-01-01T00:00:00Z", "schema_version": 2, "causation_id": None, "data": events[0].data,
    }  # fmt: skip
    parsed = parse(orjson.dumps(raw), 0, 1, T0 + 1)
    assert parsed == events[0]
    with pytest.raises(ValueError, match="not an event"):
        parse(b'{"nope": 1}', 3, 7, T0)
    assert lifecycle(events).final == "OrderConfirmed" and not lifecycle(events).broken
    assert lifecycle([dataclasses.replace(events[1], seq=1)]).broken == ("OrderRouting after nothing",)
    assert lifecycle(events[1:]).broken == ("seq 2 where 1 was due",)


def test_recovery_waits_for_every_view_and_every_partition() -> None:
    c = Completions(partitions=2)
    c.ack("a", 0, T0 + 1)
    c.ack("b", 1, T0 + 2)
    c.ack("before", 1, T0 - 5)
    c.logged.update(a=T0 + 3, b=T0 + 4, before=T0 - 1)
    c.projected.update(a=T0 + 5, before=T0 - 1)
    assert c.recovered(T0).first_s == pytest.approx(5.0), "a: its projection was the last view"
    assert c.recovered(T0).all_s is None, "b is not projected yet: partition 1 has not recovered"
    c.projected["b"] = T0 + 9
    assert c.recovered(T0).all_s == pytest.approx(9.0)
    c.followed.add("b")
    assert c.recovered(T0).all_s is None, "a followed order also needs its terminal frame"
    c.ack("replayed", 0, T0 + 0.5)  # a retry answered after the fault, the order itself ended before it
    c.logged["replayed"], c.projected["replayed"] = T0 - 2, T0 + 1  # (its row caught up after the fault)
    assert c.recovered(T0).first_s == pytest.approx(5.0), "an order that ended before the fault says nothing"
    assert c.first_views(T0)["projection"] == pytest.approx(5.0)
