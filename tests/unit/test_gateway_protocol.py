"""The wire protocol's pure parts: order ids, fromSeq, keepOpen, /ws messages and close reasons."""

from __future__ import annotations

import pytest

from services.gateway import protocol
from services.gateway.protocol import Ping, ProtocolError, Subscribe, Unsubscribe

OID = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"


def test_stream_request_defaults_and_options() -> None:
    assert protocol.stream_request(OID, {}) == protocol.StreamRequest(OID, 0, False)
    assert protocol.stream_request(OID, {"fromSeq": "3", "keepOpen": "1"}) == protocol.StreamRequest(
        OID, 3, True
    )
    assert protocol.stream_request(OID.upper(), {"keepOpen": "true"}).order_id == OID


@pytest.mark.parametrize("bad", ["", "123", "not-a-uuid", OID + "0", OID.replace("-", ""), "../../etc"])
def test_invalid_order_ids_are_refused(bad: str) -> None:
    with pytest.raises(ProtocolError, match="invalid order id"):
        protocol.order_id(bad)


@pytest.mark.parametrize("bad", ["-1", "x", "1.5", "99999999999", True, 2.0])
def test_invalid_from_seq_is_refused(bad: object) -> None:
    with pytest.raises(ProtocolError, match="fromSeq"):
        protocol.from_seq(bad)


def test_from_seq_absent_means_from_the_start() -> None:
    assert protocol.from_seq(None) == protocol.from_seq("") == 0
    assert protocol.from_seq(7) == protocol.from_seq("7") == 7


def test_client_messages() -> None:
    assert protocol.client_message(f'{{"action":"subscribe","orderId":"{OID}"}}') == Subscribe(OID, 0)
    assert protocol.client_message(f'{{"action":"subscribe","orderId":"{OID}","fromSeq":4}}') == Subscribe(
        OID, 4
    )
    assert protocol.client_message(f'{{"action":"unsubscribe","orderId":"{OID}"}}') == Unsubscribe(OID)
    assert protocol.client_message('{"action":"ping","id":9}') == Ping(9)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("nope", "JSON objects"),
        ("[1]", "JSON objects"),
        ('{"action":"dance"}', "action must be"),
        ('{"action":"subscribe"}', "needs an orderId"),
        ('{"action":"subscribe","orderId":"abc"}', "invalid order id"),
        (f'{{"action":"subscribe","orderId":"{OID}","fromSeq":-2}}', "fromSeq"),
    ],
)
def test_bad_client_messages_say_what_is_wrong(raw: str, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        protocol.client_message(raw)


def test_close_reasons_fit_in_a_close_frame() -> None:
    long = protocol.reason("é" * 200)
    assert len(long.encode()) <= 123 and long.endswith("...")
    assert protocol.terminal_reason("confirmed", 5) == "order confirmed at seq 5: stream complete"
    assert "fromSeq=4" in protocol.slow_reason(1000, 4)
    assert "fromSeq=<last seq received>" in protocol.slow_reason(1000)
    assert "30 s" in protocol.not_found_reason(30.0)
