"""`order_events` rows -> items: the projector's shape (payload = data) and a whole-event payload both work;
a row that is not a valid event of its order is dropped (the log fills the gap)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from events.codec import encode
from services.gateway.frames import item_for
from services.gateway.pghistory import item_from_row
from tests.samples import lifecycle_events


def row(event: Any, payload: bytes, **extra: Any) -> dict[str, Any]:
    base = {
        "order_id": event.order_id,
        "seq": event.seq,
        "event_id": event.event_id,
        "type": event.type,
        "status": "x",
        "payload": payload.decode(),
        "occurred_at": event.occurred_at,
        "topic": "t",
        "partition": 2,
        "offset": 40 + event.seq,
        "causation_id": event.causation_id,
        "schema_version": 1,
    }
    base.update(extra)
    return base


def test_a_projector_row_gives_the_same_frame_as_the_log() -> None:
    for event in lifecycle_events():
        it = item_from_row(row(event, msgspec.json.encode(event.data)))
        assert it == item_for(event, 2, 40 + event.seq)


def test_a_row_without_the_later_columns_still_works() -> None:
    event = lifecycle_events()[2]
    r = row(event, msgspec.json.encode(event.data))
    del r["causation_id"], r["schema_version"]
    it = item_from_row(r)
    assert it is not None and orjson.loads(it.frame)["data"]["selectedDex"] == "meteora"


def test_a_whole_event_payload_is_accepted() -> None:
    event = lifecycle_events()[0]
    assert item_from_row(row(event, encode(event))) == item_for(event, 2, 41)


def test_bad_rows_are_dropped() -> None:
    event = lifecycle_events()[1]
    assert item_from_row(row(event, b'{"attempt": 0}')) is None  # breaks the contract
    assert item_from_row(row(event, b"not json")) is None
    assert item_from_row(row(event, encode(event), seq=9)) is None  # the whole event says seq 2
