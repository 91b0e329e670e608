"""The gateway's wire protocol as pure functions: close codes, query parameters and client messages.

Close codes (RFC 6455 reserves 4000-4999 for applications; ours mirror HTTP where one fits):

| code | when | what the client does |
| --- | --- | --- |
| 1000 | the order reached its terminal status (confirmed, failed, cancelled or expired) | nothing: the stream is complete |
| 1001 | the gateway is shutting down | reconnect with `fromSeq` = last seq received |
| 1008 | the account holds as many connections as it may (`GATEWAY_MAX_ACCOUNT_CONNECTIONS`) | close another first |
| 1009 | (sent by uvicorn) a client message over `GATEWAY_MAX_MESSAGE_BYTES` | send smaller messages |
| 1011 | history could not be made complete (a seq is missing from every source) | retry later with `fromSeq` |
| 1012 | (sent by uvicorn) the server restarts | reconnect with `fromSeq` |
| 1013 | the client read too slowly (its send queue filled up, or it read nothing while a message of its waited), or the gateway is full or not ready | reconnect with `fromSeq`, read faster |
| 4400 | the order id or a query parameter is invalid | fix the request |
| 4404 | no event of the order appeared within the not-found timeout | check the id; reconnect if it was just created |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

NORMAL = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009  # sent by uvicorn (its `ws_max_size`), before the message reaches us
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
BAD_REQUEST = 4400
NOT_FOUND = 4404

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
_MAX_SEQ = 2**31 - 1


class ProtocolError(ValueError):
    """A request the gateway refuses: the message says what is wrong, for a close reason or error frame."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a client asked for on `/ws/orders/{orderId}`."""

    order_id: str
    from_seq: int = 0  # frames with seq > from_seq are sent
    keep_open: bool = False  # stay open after the terminal event


@dataclass(frozen=True, slots=True)
class Subscribe:
    order_id: str
    from_seq: int = 0


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    order_id: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: Any = None


ClientMessage = Subscribe | Unsubscribe | Ping


def order_id(raw: str) -> str:
    """The canonical order id: a lower-case UUID, the only spelling the log knows (upper case is folded)."""
    value = raw.strip().lower()
    if not _UUID.fullmatch(value):
        raise ProtocolError(f"invalid order id {raw[:40]!r}: expected a UUID")
    return value


def from_seq(raw: object) -> int:
    """`fromSeq`: the last seq the client already has (0 or absent: from the start)."""
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ProtocolError("fromSeq must be an integer >= 0")
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(f"fromSeq must be an integer >= 0, got {str(raw)[:20]!r}") from None
    if not 0 <= value <= _MAX_SEQ:
        raise ProtocolError("fromSeq must be an integer >= 0")
    return value


def flag(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() in ("1", "true", "yes", "on")


def stream_request(path_order_id: str, query: Mapping[str, str]) -> StreamRequest:
    """Validate `/ws/orders/{orderId}?fromSeq=N&keepOpen=1`."""
    return StreamRequest(
        order_id=order_id(path_order_id),
        from_seq=from_seq(query.get("fromSeq")),
        keep_open=flag(query.get("keepOpen")),
    )


def client_message(raw: str | bytes) -> ClientMessage:
    """One message a client sent on `/ws`: subscribe, unsubscribe or ping."""
    try:
        msg = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ProtocolError("messages must be JSON objects") from None
    if not isinstance(msg, dict):
        raise ProtocolError("messages must be JSON objects")
    action = msg.get("action")
    if action == "ping":
        return Ping(msg.get("id"))
    if action not in ("subscribe", "unsubscribe"):
        raise ProtocolError("action must be subscribe, unsubscribe or ping")
    raw_id = msg.get("orderId")
    if not isinstance(raw_id, str):
        raise ProtocolError(f"{action} needs an orderId")
    oid = order_id(raw_id)
    if action == "unsubscribe":
        return Unsubscribe(oid)
    return Subscribe(oid, from_seq(msg.get("fromSeq")))


def reason(text: str) -> str:
    """A close reason cut to what a close frame can carry (123 UTF-8 bytes)."""
    data = text.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return text
    return data[: _MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def terminal_reason(status: str, seq: int) -> str:
    return reason(f"order {status} at seq {seq}: stream complete")


def slow_reason(queued: int, last_seq: int | None = None) -> str:
    resume = f"fromSeq={last_seq}" if last_seq is not None else "fromSeq=<last seq received>"
    return reason(f"too slow: {queued} frames unread; reconnect with {resume}")


def not_found_reason(timeout_s: float) -> str:
    return reason(f"order not found: no event within {timeout_s:g} s")
