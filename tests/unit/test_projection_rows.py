"""The pure mapping between order states / events and the projection's rows."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.codec import encode
from events.lifecycle import OrderState, fold
from projections.rows import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ORDER_COLUMNS,
    ORDER_TYPES,
    event_from_row,
    event_row,
    order_row,
    state_from_row,
)
from tests.samples import lifecycle_events


def _final(failed: bool = False) -> OrderState:
    state = fold(lifecycle_events(failed=failed))
    assert state is not None
    return state


def _as_db_row(row: tuple) -> dict:
    """What asyncpg would hand back for the row: a mapping by column name."""
    return dict(zip(ORDER_COLUMNS, row, strict=True))


def test_column_lists_have_their_types() -> None:
    assert len(ORDER_COLUMNS) == len(ORDER_TYPES) == len(set(ORDER_COLUMNS))
    assert len(EVENT_COLUMNS) == len(EVENT_TYPES) == len(set(EVENT_COLUMNS))


@pytest.mark.parametrize("failed", [False, True])
def test_every_step_of_a_lifecycle_round_trips_through_its_row(failed: bool) -> None:
    state = None
    for event in lifecycle_events(failed=failed):
        state = fold([event], state)
        assert state is not None
        row = order_row(state, "orders.events", 2, 41)
        assert state_from_row(_as_db_row(row)) == state


def test_the_row_holds_what_the_seed_stored_plus_the_position() -> None:
    state = _final()
    row = _as_db_row(order_row(state, "orders.events", 2, 41))
    assert row["id"] == state.order_id and row["status"] == "confirmed"
    assert row["selected_dex"] == "meteora" and row["tx_hash"] == state.tx_hash
    assert row["last_seq"] == 5 and (row["last_topic"], row["last_partition"], row["last_offset"]) == (
        "orders.events", 2, 41,
    )  # fmt: skip
    quotes = msgspec.json.decode(row["quotes"])
    assert [q["venue"] for q in quotes] == ["raydium", "meteora"]


def test_an_order_without_quotes_has_null_quotes() -> None:
    state = fold(lifecycle_events()[:2])
    assert state is not None
    assert _as_db_row(order_row(state, "t", 0, 0))["quotes"] is None


def test_failed_order_keeps_reason_stage_and_venue() -> None:
    row = _as_db_row(order_row(_final(failed=True), "t", 0, 9))
    assert row["status"] == "failed" and row["failure_reason"] == "slippage exceeded"
    assert row["failure_stage"] == "execution" and row["selected_dex"] == "meteora"


def test_the_same_state_always_gives_the_same_row() -> None:
    state = _final()
    assert order_row(state, "t", 1, 2) == order_row(msgspec.structs.replace(state), "t", 1, 2)


def test_event_row_and_back_is_the_event_as_the_log_has_it() -> None:
    for event in lifecycle_events():
        row = dict(zip(EVENT_COLUMNS, event_row(event, "orders.events", 1, 7), strict=True))
        assert row["status"] in ("pending", "routing", "building", "submitted", "confirmed")
        assert (row["topic"], row["partition"], row["offset"]) == ("orders.events", 1, 7)
        back = event_from_row(row)
        assert msgspec.json.decode(encode(event)) == msgspec.json.decode(msgspec.json.encode(back))


def test_event_row_timestamps_are_utc() -> None:
    event = lifecycle_events()[0]
    occurred = dict(zip(EVENT_COLUMNS, event_row(event, "t", 0, 0), strict=True))["occurred_at"]
    assert isinstance(occurred, datetime) and occurred.tzinfo == UTC
