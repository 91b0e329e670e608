"""The wire format: every event survives a round trip, and anything else is rejected with a typed error."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from events.codec import (
    EventDecodeError,
    InvalidEvent,
    UnknownEventType,
    decode,
    encode,
    header_type,
    headers_for,
    key_for,
)
from events.examples import confirmed_stream, example_events, failed_stream
from events.types import EVENT_TYPES, SCHEMA_VERSION, OrderRequested, OrderRouting

EXAMPLES = example_events()


def _raw(event_type: str, mutate: Callable[[dict[str, Any]], None] | None = None) -> bytes:
    """The example of `event_type` as JSON, after `mutate` edited its object form."""
    obj = json.loads(encode(EXAMPLES[event_type]))
    if mutate:
        mutate(obj)
    return json.dumps(obj).encode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            obj = obj[int(key)] if isinstance(obj, list) else obj[key]
        obj[last] = value  # type: ignore[index]

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            obj = obj[key]
        del obj[last]

    return mutate


@pytest.mark.parametrize("event", confirmed_stream() + failed_stream(), ids=lambda e: f"{e.type}-{e.seq}")
def test_every_event_type_round_trips_equal(event: Any) -> None:
    decoded = decode(encode(event))
    assert decoded == event
    assert type(decoded) is type(event)
    assert decoded.occurred_at.utcoffset().total_seconds() == 0


def test_examples_cover_every_event_type() -> None:
    assert list(EXAMPLES) == list(EVENT_TYPES)


def test_encoding_is_compact_json_with_type_first_and_utc_z_datetimes() -> None:
    raw = encode(EXAMPLES["OrderBuilding"])
    assert raw.startswith(b'{"type":"OrderBuilding",')
    assert b" " not in raw.split(b'"reason"')[0], "compact: no whitespace between tokens"
    obj = json.loads(raw)
    assert obj["occurred_at"].endswith("Z")
    assert all(q["quoted_at"].endswith("Z") for q in obj["data"]["quotes"])
    assert set(obj) == {
        "type",
        "event_id",
        "order_id",
        "seq",
        "occurred_at",
        "schema_version",
        "causation_id",
        "data",
    }


def test_key_is_the_order_id_so_an_orders_events_share_a_partition() -> None:
    keys = {key_for(e) for e in confirmed_stream()}
    assert keys == {confirmed_stream()[0].order_id.encode()}


def test_headers_name_the_type_and_version_for_skipping_without_decoding() -> None:
    event = EXAMPLES["OrderConfirmed"]
    headers = headers_for(event)
    assert headers == [("type", b"OrderConfirmed"), ("schema_version", b"1")]
    assert header_type(headers) == "OrderConfirmed"
    assert header_type([("traceparent", b"00-abc")]) is None
    assert header_type(None) is None


def _case(name: str, raw: Any, reason: str, error: type[EventDecodeError] = InvalidEvent) -> Any:
    return pytest.param(raw, error, reason, id=name)


def _replace(event_type: str, old: bytes, new: bytes) -> bytes:
    raw = _raw(event_type)
    assert old in raw
    return raw.replace(old, new)


REQ, ROUTE, BUILD = "OrderRequested", "OrderRouting", "OrderBuilding"
NAIVE = "2025-03-14T09:26:53"
BAD = [
    _case("garbage bytes", b"\x00\xffgarbage", "not JSON"),
    _case("empty", b"", "not JSON"),
    _case("not json", b"hello world", "not JSON"),
    _case("truncated", _raw(ROUTE)[:-3], "not JSON"),
    _case("json array", b"[1, 2, 3]", "got array"),
    _case("json string", b'"OrderRequested"', "got string"),
    _case("json null", b"null", "got null"),
    _case("none", None, "expected bytes, got NoneType"),
    _case("int", 42, "expected bytes, got int"),
    _case("deep nesting", b"[" * 100_000, "got `array`"),
    _case("deep nesting in object", b'{"a":' * 100_000, "recursion"),
    _case("invalid utf-8 in a value", _replace(REQ, b'"SOL"', b'"\xff\xfe"'), "UTF-8"),
    _case("unknown type", _raw(ROUTE, _set("type", "OrderAmended")), "OrderAmended", UnknownEventType),
    _case("missing type", _raw(ROUTE, _drop("type")), "type"),
    _case("non-string type", _raw(ROUTE, _set("type", 7)), "type"),
    _case("missing order_id", _raw(ROUTE, _drop("order_id")), "order_id"),
    _case("missing data", _raw(ROUTE, _drop("data")), "data"),
    _case("missing data field", _raw(REQ, _drop("data.amount_in")), "amount_in"),
    _case("null data", _raw(ROUTE, _set("data", None)), "data"),
    _case("seq as string", _raw(ROUTE, _set("seq", "2")), "$.seq"),
    _case("seq as bool", _raw(ROUTE, _set("seq", True)), "$.seq"),
    _case("seq zero", _raw(ROUTE, _set("seq", 0)), "$.seq"),
    _case("huge seq", _raw(ROUTE, _set("seq", 10**30)), "$.seq"),
    _case("seq beyond int32", _raw(ROUTE, _set("seq", 2**31)), "$.seq"),
    _case("zero amount", _raw(REQ, _set("data.amount_in", 0)), "amount_in"),
    _case("negative amount", _raw(REQ, _set("data.amount_in", -1.5)), "amount_in"),
    _case("amount as string", _raw(REQ, _set("data.amount_in", "1.5")), "amount_in"),
    _case("NaN amount", _replace(REQ, b'"amount_in": 12.5', b'"amount_in": NaN'), "not JSON"),
    _case("Infinity literal", _replace(REQ, b'"amount_in": 12.5', b'"amount_in": Infinity'), "not JSON"),
    _case("inf amount", _replace(REQ, b'"amount_in": 12.5', b'"amount_in": 1e999'), "amount_in"),
    _case(
        "inf impact", _replace(BUILD, b'"price_impact_bps": 4.67', b'"price_impact_bps": -1e999'), "impact"
    ),
    _case("slippage above 10000", _raw(REQ, _set("data.slippage_bps", 10_001)), "slippage_bps"),
    _case("negative slippage", _raw(REQ, _set("data.slippage_bps", -1)), "slippage_bps"),
    _case("fractional slippage", _raw(REQ, _set("data.slippage_bps", 1.5)), "slippage_bps"),
    _case("naive datetime", _raw(ROUTE, _set("occurred_at", NAIVE)), "occurred_at"),
    _case("not a datetime", _raw(ROUTE, _set("occurred_at", "yesterday")), "occurred_at"),
    _case("naive quote time", _raw(BUILD, _set("data.quotes.0.quoted_at", NAIVE)), "quoted_at"),
    _case("unknown top-level field", _raw(ROUTE, _set("priority", "high")), "priority"),
    _case("unknown data field", _raw(ROUTE, _set("data.retries", 2)), "retries"),
    _case("unknown side", _raw(REQ, _set("data.side", "hold")), "side"),
    _case(
        "limit order without a limit",
        _raw(REQ, _set("data.order_type", "limit")),
        "needs expires_at, limit_price",
    ),
    _case("unknown order type", _raw(REQ, _set("data.order_type", "stop")), "order_type"),
    _case("same base and quote", _raw(REQ, _set("data.quote_token", "SOL")), "base_token"),
    _case("empty token", _raw(REQ, _set("data.base_token", "")), "base_token"),
    _case("bad order id", _raw(ROUTE, _set("order_id", "not-a-uuid")), "order_id"),
    _case("36-char non-uuid order id", _raw(ROUTE, _set("order_id", "x" * 36)), "order_id"),
    _case("upper-case order id", _raw(ROUTE, _set("order_id", EXAMPLES[ROUTE].order_id.upper())), "order_id"),
    _case("bad event id", _raw(ROUTE, _set("event_id", "7c9e6679-7425-40de-944b-e07fc1f90aeZ")), "event_id"),
    _case("bad causation id", _raw(ROUTE, _set("causation_id", "")), "causation_id"),
    _case("schema version zero", _raw(ROUTE, _set("schema_version", 0)), "schema_version"),
    _case("schema version from the future", _raw(ROUTE, _set("schema_version", 2)), "newer"),
    _case("no quotes", _raw(BUILD, _set("data.quotes", [])), "quotes"),
    _case("unquoted venue selected", _raw(BUILD, _set("data.selected_venue", "orca")), "selected_venue"),
    _case("fee above 100%", _raw(BUILD, _set("data.quotes.0.fee_bps", 10_001)), "fee_bps"),
    _case("unknown failure stage", _raw("OrderFailed", _set("data.stage", "settlement")), "stage"),
    _case("negative attempts", _raw("OrderFailed", _set("data.attempts", -1)), "attempts"),
    _case("empty tx hash", _raw("OrderConfirmed", _set("data.tx_hash", "")), "tx_hash"),
    _case(
        "another type's data",
        _raw(ROUTE, _set("data", json.loads(_raw("OrderFailed"))["data"])),
        "unknown field",
    ),
]


@pytest.mark.parametrize(("raw", "error", "reason"), BAD)
def test_strict_decode_rejects_with_a_typed_error_and_a_useful_reason(
    raw: Any, error: type[EventDecodeError], reason: str
) -> None:
    with pytest.raises(error) as info:
        decode(raw)
    assert reason in info.value.reason, info.value.reason
    assert info.value.raw == (raw if isinstance(raw, bytes) else b"")


def test_unknown_type_error_names_the_type() -> None:
    with pytest.raises(UnknownEventType) as info:
        decode(_raw("OrderRouting", _set("type", "OrderExploded")))
    assert info.value.event_type == "OrderExploded"
    assert isinstance(info.value, EventDecodeError)


def test_decode_raises_only_event_decode_errors_whatever_the_bytes() -> None:
    rng = random.Random(20250314)
    valid = [encode(e) for e in confirmed_stream() + failed_stream()]
    decoded = rejected = 0
    for _ in range(3000):
        raw = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            op, at = rng.randrange(4), rng.randrange(len(raw) + 1)
            if op == 0 and at < len(raw):
                raw[at] = rng.randrange(256)
            elif op == 1:
                raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
            elif op == 2:
                del raw[at : at + rng.randint(1, 8)]
            else:
                raw = raw[:at]
        try:
            event = decode(bytes(raw))
        except EventDecodeError as exc:
            assert exc.reason
            rejected += 1
        else:
            assert decode(encode(event)) == event
            decoded += 1
    assert rejected > 2000, "most random mutations must be rejected"


def test_a_non_utc_offset_is_normalised_to_utc() -> None:
    raw = _raw("OrderRouting", _set("occurred_at", "2025-03-14T11:26:53.793+02:00"))
    event = decode(raw)
    assert event.occurred_at == EXAMPLES["OrderRouting"].occurred_at
    assert json.loads(encode(event))["occurred_at"] == "2025-03-14T09:26:53.793000Z"


def _upcaster(monkeypatch: pytest.MonkeyPatch, version: int, fn: Any) -> None:
    """Give OrderRouting an upcaster from `version` (on the class, where upcasters live)."""
    monkeypatch.setattr(OrderRouting, "upcasters", {**OrderRouting.upcasters, version: fn})


class TestUpcasting:
    """Old versions stay in the log as written and are upcast on every read."""

    @staticmethod
    def _v1_routing() -> bytes:
        # Pretend version 1 of OrderRouting called the field `try`; version 2 (the code now) says `attempt`.
        obj = json.loads(encode(EXAMPLES["OrderRouting"]))
        obj["data"] = {"try": obj["data"].pop("attempt")}
        return json.dumps(obj).encode()

    def test_an_old_version_is_upcast_then_validated(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(OrderRouting, "version", 2)

        def v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
            obj["data"] = {"attempt": obj["data"]["try"]}
            return obj

        _upcaster(monkeypatch, 1, v1_to_v2)
        event = decode(self._v1_routing())
        assert isinstance(event, OrderRouting)
        assert event.data.attempt == 1
        assert event.schema_version == 2
        assert headers_for(event)[1] == ("schema_version", b"2")
        assert event.event_id == EXAMPLES["OrderRouting"].event_id

    def test_upcasters_chain_across_versions(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(OrderRouting, "version", 3)
        seen: list[int] = []

        def v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
            seen.append(obj["schema_version"])
            obj["data"] = {"attempt_no": obj["data"]["try"]}
            return obj

        def v2_to_v3(obj: dict[str, Any]) -> dict[str, Any]:
            seen.append(obj["schema_version"])
            obj["data"] = {"attempt": obj["data"]["attempt_no"]}
            return obj

        _upcaster(monkeypatch, 1, v1_to_v2)
        _upcaster(monkeypatch, 2, v2_to_v3)
        event = decode(self._v1_routing())
        assert seen == [1, 2]
        assert event.schema_version == 3
        assert isinstance(event, OrderRouting) and event.data.attempt == 1

    def test_an_old_record_that_happens_to_decode_is_still_upcast(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(OrderRouting, "version", 2)
        _upcaster(monkeypatch, 1, lambda obj: {**obj, "data": {"attempt": 2}})
        event = decode(encode(EXAMPLES["OrderRouting"]))
        assert isinstance(event, OrderRouting) and event.data.attempt == 2

    def test_current_version_never_runs_an_upcaster(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(obj: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError("upcaster ran on a current-version record")

        _upcaster(monkeypatch, 1, boom)
        assert decode(encode(EXAMPLES["OrderRouting"])) == EXAMPLES["OrderRouting"]

    def test_a_missing_upcaster_is_an_invalid_event(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(OrderRouting, "version", 2)
        with pytest.raises(InvalidEvent, match="no upcaster registered for OrderRouting v1"):
            decode(self._v1_routing())

    def test_a_failing_upcaster_is_an_invalid_event(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(OrderRouting, "version", 2)
        _upcaster(monkeypatch, 1, lambda obj: obj["data"]["missing"])
        with pytest.raises(InvalidEvent, match="upcasting OrderRouting v1 failed"):
            decode(self._v1_routing())

    def test_an_upcast_result_is_validated_strictly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(OrderRouting, "version", 2)
        _upcaster(monkeypatch, 1, lambda obj: obj)  # forgets the rename
        with pytest.raises(InvalidEvent, match="after upcasting v1 to v2"):
            decode(self._v1_routing())


class TestOrderRequestedVersions:
    """OrderRequested v2 names the account; a v1 record (written before accounts) reads as account `local`.
    v3 added the limit and sniper types: a v2 record is a market order as it is."""

    def test_the_upcaster_lives_on_the_class(self) -> None:
        assert OrderRequested.version == 3 == SCHEMA_VERSION["OrderRequested"]
        assert set(OrderRequested.upcasters) == {1, 2}
        assert OrderRouting.version == 1 and not OrderRouting.upcasters

    def test_a_v2_record_reads_as_the_same_market_order(self) -> None:
        raw = _raw("OrderRequested", _set("schema_version", 2))
        event = decode(raw)
        assert event == EXAMPLES["OrderRequested"] and event.schema_version == 3
        assert isinstance(event, OrderRequested) and event.data.order_type == "market"

    def test_a_v1_record_reads_as_the_local_account(self) -> None:
        def as_v1(obj: dict[str, Any]) -> None:
            obj["schema_version"] = 1
            del obj["data"]["account_id"]

        raw = _raw("OrderRequested", as_v1)
        event = decode(raw)
        assert isinstance(event, OrderRequested)
        assert event.data.account_id == "local" and event.schema_version == 3
        assert event.data.idempotency_key == EXAMPLES["OrderRequested"].data.idempotency_key  # type: ignore[attr-defined]
        assert headers_for(event)[1] == ("schema_version", b"3")

    def test_v2_keeps_its_account_and_requires_a_valid_one(self) -> None:
        event = decode(encode(EXAMPLES["OrderRequested"]))
        assert isinstance(event, OrderRequested) and event.data.account_id == "desk-7"
        with pytest.raises(InvalidEvent, match="account_id"):
            decode(_raw("OrderRequested", _set("data.account_id", "Not An Account")))
