"""Intake commands: cancel and trigger requests share the intake with OrderRequested, strictly decoded."""

from __future__ import annotations

import pytest

from events.codec import encode
from events.commands import (
    CancelRequestData,
    OrderCancelRequested,
    OrderTriggerRequested,
    command_headers,
    decode_intake,
    encode_command,
    new_command,
)
from events.envelope import new_id
from events.errors import EventValidationError, InvalidEvent, UnknownEventType
from events.examples import example_commands, example_events
from events.types import OrderRequested

COMMANDS = example_commands()


def test_each_intake_record_decodes_to_what_was_written() -> None:
    request = example_events()["OrderRequested"]
    assert decode_intake(encode(request)) == request
    for command in COMMANDS.values():
        assert decode_intake(encode_command(command)) == command
        assert command_headers(command) == [("type", command.type.encode()), ("schema_version", b"1")]


def test_an_old_order_request_on_the_intake_is_upcast() -> None:
    raw = encode(example_events()["OrderRequested"]).replace(b'"schema_version":3', b'"schema_version":2')
    upcast = decode_intake(raw)
    assert isinstance(upcast, OrderRequested) and upcast.schema_version == 3


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (b"not json", InvalidEvent, "not JSON"),
        (b"[]", InvalidEvent, "JSON object"),
        (b'{"type":"OrderCancelRequested","order_id":"x"}', InvalidEvent, "invalid OrderCancelRequested"),
        (b'{"type":"OrderShouted"}', UnknownEventType, "OrderShouted"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        decode_intake(raw)


def test_an_order_event_other_than_the_request_does_not_belong_on_the_intake() -> None:
    with pytest.raises(InvalidEvent, match="unexpected on the intake topic: OrderRouting"):
        decode_intake(encode(example_events()["OrderRouting"]))


def test_a_cancel_names_an_account_and_canonical_ids() -> None:
    command = new_command(OrderCancelRequested, order_id=new_id(), data=CancelRequestData(account_id="alice"))
    assert isinstance(command, OrderCancelRequested) and command.schema_version == 1
    with pytest.raises(EventValidationError, match="account_id"):
        new_command(OrderCancelRequested, order_id=new_id(), data=CancelRequestData(account_id="Not Me"))
    with pytest.raises(EventValidationError, match="order_id"):
        new_command(OrderCancelRequested, order_id=new_id().upper(), data=CancelRequestData(account_id="a"))


def test_a_trigger_carries_what_fired_it() -> None:
    trigger = COMMANDS["OrderTriggerRequested"]
    assert isinstance(trigger, OrderTriggerRequested)
    fired = trigger.data.triggered
    assert (fired.trigger, fired.venue, fired.bound) == ("price", "raydium", 151.0)
    assert trigger.data.refusal is None
