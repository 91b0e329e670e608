"""Folding the state topic into a partition's memory: latest record wins, tombstones forget, the position
is kept, and records written before the lifecycle status was stored still restore."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.router import flow, statestore
from services.router.memory import OrderMemory
from tests.samples import order_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_latest_record_of_each_order_and_the_position_are_restored() -> None:
    a = flow.accept(order_request(), T0).tracked
    b = flow.accept(order_request(), T0).tracked
    done = msgspec.structs.replace(b, status="failed")
    restored = statestore.Restored(OrderMemory(10))
    statestore.fold(
        restored,
        [
            (a.order_id.encode(), statestore.encode_tracked(a)),
            (b.order_id.encode(), statestore.encode_tracked(b)),
            (statestore.POSITION_KEY, statestore.encode_position(2)),
            (b.order_id.encode(), statestore.encode_tracked(done)),
            (a.order_id.encode(), None),  # tombstone
        ],
    )
    assert restored.next_offset == 2 and restored.records == 5
    assert (
        restored.active == {} and restored.memory.known(b.order_id) and not restored.memory.known(a.order_id)
    )


def test_records_of_the_phase_only_format_restore() -> None:
    t = flow.accept(order_request(), T0).tracked
    legacy = msgspec.json.encode({**msgspec.to_builtins(t), "phase": "submitted", "venue": "meteora"})
    legacy = msgspec.json.encode({k: v for k, v in msgspec.json.decode(legacy).items() if k != "status"})
    restored = statestore.Restored(OrderMemory(10))
    statestore.fold(restored, [(t.order_id.encode(), legacy)])
    back = restored.active[t.order_id]
    assert back.status == "submitted" and back.phase == "submitted" and back.valid_until is None
    finished = msgspec.json.encode({**msgspec.json.decode(legacy), "phase": "done"})
    statestore.fold(restored, [(t.order_id.encode(), finished)])
    assert restored.active == {} and restored.memory.known(t.order_id)
