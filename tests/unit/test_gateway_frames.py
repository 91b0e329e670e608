"""Event -> frame mapping: the seed's frame fields and `data` keys for every status, plus seq and type."""

from __future__ import annotations

import orjson
import pytest

from events.examples import confirmed_stream, failed_stream
from services.gateway.frames import control, event_frame, item_for
from tests.samples import lifecycle_events

SEED_FIELDS = {"orderId", "status", "data", "ts"}
# The keys the seed's clients read in `data`, per status (docs: seed-contract.md).
SEED_DATA_KEYS = {
    "pending": {"order"},
    "routing": set(),
    "building": {"selectedDex", "quote"},
    "submitted": {"selectedDex", "minAcceptablePrice"},
    "confirmed": {"txHash", "executedPrice", "selectedDex"},
    "failed": {"error"},
}


@pytest.mark.parametrize("stream", [confirmed_stream, failed_stream], ids=["confirmed", "failed"])
def test_every_frame_has_the_seed_fields_and_data_keys(stream) -> None:  # type: ignore[no-untyped-def]
    for event in stream():
        frame = event_frame(event)
        assert SEED_FIELDS <= set(frame)
        assert frame["orderId"] == event.order_id
        assert frame["seq"] == event.seq
        assert frame["type"] == event.type
        assert SEED_DATA_KEYS[frame["status"]] <= set(frame["data"])


def test_statuses_follow_the_lifecycle() -> None:
    statuses = [event_frame(e)["status"] for e in confirmed_stream()]
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    assert [event_frame(e)["status"] for e in failed_stream()] == ["pending", "routing", "failed"]


def test_pending_carries_the_order_in_camel_case() -> None:
    requested = confirmed_stream()[0]
    order = event_frame(requested)["data"]["order"]
    assert order == {
        "id": requested.order_id,
        "type": "market",
        "baseToken": "SOL",
        "quoteToken": "USDC",
        "side": "sell",
        "amountIn": 12.5,
        "slippageBps": 50,
        "status": "pending",
        "createdAt": "2025-03-14T09:26:53.589Z",
        "idempotencyKey": "checkout-42f1",
    }


def test_building_names_the_chosen_quote_and_keeps_both() -> None:
    data = event_frame(confirmed_stream()[2])["data"]
    assert data["selectedDex"] == "meteora"
    assert data["quote"]["dex"] == "meteora"
    assert data["quote"]["price"] == 149.6569
    assert data["quote"]["fee"] == pytest.approx(0.00224)  # the seed's fee: a fraction
    assert [q["dex"] for q in data["quotes"]] == ["raydium", "meteora"]
    assert "meteora pays" in data["reason"]


def test_submitted_confirmed_and_failed_data() -> None:
    submitted, confirmed = (event_frame(e)["data"] for e in confirmed_stream()[3:])
    assert submitted["minAcceptablePrice"] == 148.9086 and submitted["selectedDex"] == "meteora"
    assert confirmed == {
        "txHash": "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnb",
        "executedPrice": 149.6421,
        "selectedDex": "meteora",
        "amountIn": 12.5,
        "amountOut": 1870.5263,
        "clientOrderId": f"{confirmed_stream()[0].order_id}-1",
    }
    failed = event_frame(failed_stream()[-1])["data"]
    assert failed["error"].startswith("no quote after 3 attempts")
    assert failed["stage"] == "routing" and failed["attempts"] == 3
    assert "selectedDex" not in failed  # it failed before a venue was chosen


def test_ts_is_the_event_time_in_epoch_milliseconds() -> None:
    event = confirmed_stream()[0]  # occurred at 09:26:53.589
    frame = event_frame(event)
    assert frame["ts"] == 1741944413589
    assert frame["occurredAt"] == "2025-03-14T09:26:53.589Z"


def test_an_item_holds_its_frame_encoded_once_and_its_position() -> None:
    events = lifecycle_events()
    item = item_for(events[-1], partition=2, offset=41)
    assert orjson.loads(item.frame) == orjson.loads(orjson.dumps(event_frame(events[-1])))
    assert (item.order_id, item.seq, item.status, item.terminal) == (
        events[-1].order_id,
        5,
        "confirmed",
        True,
    )
    assert (item.partition, item.offset) == (2, 41)
    assert not item_for(events[0], 0, 0).terminal


def test_control_frames_are_typed_in_lower_case() -> None:
    assert orjson.loads(control("heartbeat", ts=5)) == {"type": "heartbeat", "ts": 5}
    assert orjson.loads(control("end", orderId="x", code=1000)) == {
        "type": "end",
        "orderId": "x",
        "code": 1000,
    }


def test_resting_orders_frames_say_what_they_wait_for_what_fired_them_and_how_they_ended() -> None:
    from events.examples import expired_stream, limit_stream, sniper_stream

    frames = [event_frame(e) for e in limit_stream()]
    assert [f["status"] for f in frames] == [
        "pending", "open", "triggered", "routing", "building", "submitted", "submitted", "confirmed",
    ]  # fmt: skip
    requested, opened, triggered = (f["data"] for f in frames[:3])
    assert requested["order"]["type"] == "limit" and requested["order"]["limitPrice"] == 151.0
    assert "slippageBps" not in requested["order"]
    assert opened == {"trigger": "price", "limitPrice": 151.0, "expiresAt": "2025-03-14T10:26:53.589Z"}
    assert (triggered["triggerPrice"], triggered["limitPrice"], triggered["selectedDex"]) == (
        151.1725,
        151.0,
        "raydium",
    )
    assert triggered["marketAt"] == "2025-03-14T09:27:53.981Z"
    assert frames[6]["data"]["cancelRefused"] == "submitted" and frames[6]["type"] == "OrderCancelRefused"
    assert not item_for(limit_stream()[6], 0, 6).terminal, "a refused cancel ends nothing"
    expired = event_frame(expired_stream()[-1])
    assert expired["status"] == "expired" and expired["data"]["error"].startswith("expired")
    assert item_for(expired_stream()[-1], 0, 2).terminal
    cancelled = event_frame(sniper_stream()[-1])
    assert (cancelled["status"], cancelled["data"]["fromStatus"]) == ("cancelled", "open")
    assert event_frame(sniper_stream()[1])["data"]["maxPrice"] == 0.00003
