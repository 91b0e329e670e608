"""The access log and the request id: one line per HTTP request (and per WebSocket session), outermost.

Every request gets an id: the client's `X-Request-Id` when it is sane (1..128 characters of letters, digits
and `-_.:/+=@`; anything else could forge log lines or carry a secret), a fresh one otherwise. It is echoed
in the response's `X-Request-Id` (a WebSocket handshake's too), kept on `scope["state"]["request_id"]`, and
set in `services.logs.REQUEST_ID` so every line logged while the request runs carries it.

The line (logger `oee.access`, INFO) says `METHOD path status duration` and, as fields, `request_id`,
`status`, `duration_ms`, `bytes`, `account` (a name, never a key) and `client`. It never logs headers, the
query string or bodies: keys travel in headers and nothing else here may hold a secret. Under the edge, so a
refused request (401, 429...) is logged like any other. `ACCESS_LOG=off` leaves it out.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.envelope import new_id
from services.logs import REQUEST_ID

log = logging.getLogger("oee.access")

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9\-_.:/+=@]{1,128}")


def request_id(offered: str | None) -> str:
    """The client's id when it is sane, else a new one (a UUID)."""
    if offered is not None and _SANE.fullmatch(offered):
        return offered
    return new_id()


class AccessLog:
    """ASGI middleware: assigns the request id and logs one line when the request (or socket) is over."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = rid
        echoed = (HEADER.encode(), rid.encode())
        seen: dict[str, Any] = {"status": None, "bytes": 0, "close": None}

        async def tagged(message: Message) -> None:
            kind_ = message["type"]
            if kind_ in ("http.response.start", "websocket.http.response.start"):
                message["headers"] = [*message.get("headers", ()), echoed]
                seen["status"] = message["status"]
            elif kind_ == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
                seen["status"] = 101
            elif kind_ in ("http.response.body", "websocket.http.response.body"):
                seen["bytes"] += len(message.get("body", b""))
            elif kind_ == "websocket.close":
                seen["close"] = message.get("code", 1000)
                if seen["status"] is None:  # closed before accept: the handshake was refused
                    seen["status"] = 403
            await send(message)

        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, tagged)
        except BaseException:
            seen["status"] = seen["status"] or 500
            raise
        finally:
            REQUEST_ID.reset(token)
            if self.enabled:
                _line(scope, rid, seen, time.perf_counter() - started)


def _line(scope: Scope, rid: str, seen: dict[str, Any], elapsed: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
    status = seen["status"] if seen["status"] is not None else 0
    account = scope.get("state", {}).get("account")
    client = scope.get("client")
    ms = round(elapsed * 1000, 2)
    extra: dict[str, Any] = {
        "request_id": rid,
        "status": status,
        "duration_ms": ms,
        "bytes": seen["bytes"],
        "account": getattr(account, "name", None),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    if seen["close"] is not None:
        extra["close_code"] = seen["close"]
    # The path as routed (no query string: nothing secret belongs there, but nothing needs logging there).
    log.info("%s %s %s %.1f ms", method, scope.get("path", ""), status, ms, extra=extra)
