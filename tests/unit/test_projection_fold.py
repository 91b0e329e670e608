"""Folding a batch of log records: applied, duplicate, dead-lettered, point in time. Pure, no I/O."""

from __future__ import annotations

from datetime import timedelta

from events.codec import encode
from events.lifecycle import OrderState
from events.lifecycle import fold as replay
from projections.fold import LogRecord, decode_records, fold, written_by
from tests.samples import lifecycle_events


def _records(events, partition: int = 0, start: int = 0) -> list[LogRecord]:  # type: ignore[no-untyped-def]
    return [LogRecord(partition, start + i, encode(e)) for i, e in enumerate(events)]


def _fold(records: list[LogRecord], states: dict[str, OrderState] | None = None, **kw):  # type: ignore[no-untyped-def]
    decoded, dead = decode_records(records)
    states = {} if states is None else states
    out = fold(decoded, states, **kw)
    out.dead[:0] = dead
    return out, states


def test_a_whole_lifecycle_folds_to_the_state_machine_s_answer() -> None:
    events = lifecycle_events()
    out, states = _fold(_records(events))
    oid = events[0].order_id
    assert states[oid] == replay(events)
    assert [d.event.seq for d in out.applied] == [1, 2, 3, 4, 5]
    assert out.touched[oid].state.status == "confirmed" and out.touched[oid].offset == 4
    assert out.dead == [] and out.duplicates == 0


def test_a_batch_continues_from_the_given_state() -> None:
    events = lifecycle_events()
    first = replay(events[:3])
    assert first is not None
    out, states = _fold(_records(events[3:], start=3), {first.order_id: first})
    assert states[first.order_id] == replay(events)
    assert [d.event.seq for d in out.applied] == [4, 5]


def test_redelivered_events_are_skipped_and_counted() -> None:
    events = lifecycle_events()
    out, states = _fold(_records(events + events[1:3]))
    assert out.duplicates == 2 and len(out.applied) == 5 and out.dead == []
    assert states[events[0].order_id].last_seq == 5


def test_a_gap_is_dead_lettered_with_its_reason_and_the_rest_applies() -> None:
    broken, fine = lifecycle_events(), lifecycle_events()
    records = _records([broken[0], broken[1], broken[3], fine[0], fine[1]])
    out, states = _fold(records)
    assert len(out.dead) == 1
    dead = out.dead[0]
    assert dead.offset == 2 and dead.reason.startswith("SequenceGap") and dead.raw == records[2].value
    assert states[broken[0].order_id].last_seq == 2
    assert states[fine[0].order_id].last_seq == 2


def test_an_event_after_the_terminal_one_is_an_illegal_transition() -> None:
    events = lifecycle_events()
    late = lifecycle_events(order_id=events[0].order_id)[1]  # a routing event with seq 2 ...
    from msgspec.structs import replace

    late = replace(late, seq=6)
    out, _ = _fold(_records([*events, late]))
    assert [d.reason.split(":")[0] for d in out.dead] == ["IllegalTransition"]


def test_garbage_and_empty_records_are_dead_letters() -> None:
    events = lifecycle_events()
    records = [
        LogRecord(0, 0, encode(events[0])),
        LogRecord(0, 1, b"\x00\xffnot json"),
        LogRecord(0, 2, None),
        LogRecord(0, 3, b'{"type": "OrderExploded", "seq": 1}'),
        LogRecord(0, 4, encode(events[1])),
    ]
    out, states = _fold(records)
    reasons = {d.offset: d.reason for d in out.dead}
    assert set(reasons) == {1, 2, 3}
    assert reasons[1].startswith("InvalidEvent") and "empty" in reasons[2]
    assert reasons[3].startswith("UnknownEventType")
    assert states[events[0].order_id].last_seq == 2


def test_point_in_time_keeps_only_events_up_to_the_instant() -> None:
    events = lifecycle_events()
    until = events[2].occurred_at
    out, states = _fold(_records(events), until=until)
    assert states[events[0].order_id].status == "building"
    assert out.after_until == 2
    out, states = _fold(_records(events), until=events[0].occurred_at - timedelta(microseconds=1))
    assert states == {} and out.after_until == 5


def test_point_in_time_keeps_only_undecodable_records_written_up_to_the_instant() -> None:
    # A record that does not decode has no occurred_at: its log timestamp says whether it is in.
    until = lifecycle_events()[0].occurred_at
    at = int(until.timestamp() * 1000)
    records = [LogRecord(0, 0, b"early", at - 1), LogRecord(0, 1, None, at), LogRecord(0, 2, b"late", at + 1),
               LogRecord(0, 3, b"unstamped")]  # fmt: skip
    _, dead = decode_records(records)
    assert [d.timestamp_ms for d in dead] == [at - 1, at, at + 1, None]
    kept, after = written_by(dead, until)
    assert [d.offset for d in kept] == [0, 1, 3] and after == 1
