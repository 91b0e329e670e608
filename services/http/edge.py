"""The edge: every HTTP request and WebSocket handshake is authenticated here, once, before any route runs.

- The key comes from `Authorization: Bearer <key>`, or, for browsers (which cannot set headers on a
  WebSocket), from the handshake's subprotocols: `new WebSocket(url, ["oee.v1", "bearer." + key])`. The
  handshake is then accepted with subprotocol `oee.v1`, never echoing the key.
- Missing or invalid key: 401 `{error}` with `WWW-Authenticate: Bearer`; a disabled account, or a
  non-operator on an operator route: 403; the key cannot be checked (database down): 503. A WebSocket
  handshake is refused with the same answer (the ASGI denial-response extension), before it is accepted.
- The account goes to `scope["state"]["account"]` (`request.state.account`, `websocket.state.account`): an
  `Account`, or None on a public route. Routes never see a key; logs name only its key id.
- `AUTH=off`: every request is the implicit `local` account; nothing is checked.
- WebSocket `Origin` is checked against the API's own origin and `WS_ALLOWED_ORIGINS` (no Origin header: not
  a browser, allowed): a page on another site cannot open a socket with the visitor's browser.
- An order POST passes the account's order limits first (`OrderLimits`): 429 with `Retry-After` and the
  IETF `RateLimit` / `RateLimit-Policy` headers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.accounts.directory import Directory, Forbidden, Unauthenticated, Unavailable
from services.accounts.limits import OrderLimits
from services.accounts.model import LOCAL, Account
from services.accounts.options import AccountsOptions
from services.http import denials
from services.http.parts import Access, Policy
from services.http.problems import Problem
from services.http.responses import error_response
from services.metrics.edge import REFUSED

log = logging.getLogger("oee.edge")

WS_PROTOCOL = "oee.v1"
"""The subprotocol a browser offers beside `bearer.<key>`; the handshake is accepted with it."""
BEARER_PROTOCOL = "bearer."
_CHALLENGE = 'Bearer realm="oee"'


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the edge answers instead of the route: the metric's reason, the status, the error, headers."""

    reason: str
    status: int
    error: str
    headers: dict[str, str] = field(default_factory=dict)


class Edge:
    """ASGI middleware; needs `app.state.accounts` (a `Directory`) under `AUTH=keys`, and
    `app.state.order_limits` (an `OrderLimits`) for order routes, both opened by the app's lifespan."""

    def __init__(self, app: ASGIApp, policy: Policy, options: AccountsOptions) -> None:
        self.app = app
        self.policy = policy
        self.options = options
        denials.install()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if kind == "websocket" and not origin_allowed(headers, self.options.ws_origins):
            origin = headers.get("origin", "")[:100]
            refused = Refusal("origin", 403, f"origin {origin} may not open WebSockets here")
            await _deny(scope, receive, send, refused)
            return
        access = self.policy.access(scope["path"])
        key, offered = _credentials(headers, kind)
        account: Account | None = None
        if self.options.auth == "off":
            account = LOCAL
        elif access is not Access.PUBLIC:
            found = await self._authenticate(scope, key)
            if isinstance(found, Refusal):
                await _deny(scope, receive, send, found)
                return
            account = found
            if access is Access.OPERATOR and not account.operator:
                operators = Refusal("operator_only", 403, f"{scope['path']} needs an operator key")
                await _deny(scope, receive, send, operators)
                return
        scope.setdefault("state", {})["account"] = account
        if kind == "websocket" and offered:
            send = _accept_with(send, offered)
        elif kind == "http" and account is not None and scope["method"] == "POST":
            if scope["path"] in self.policy.orders:
                limited = await self._limit(scope, receive, send, account)
                if limited is None:
                    return
                send = limited
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, key: str | None) -> Account | Refusal:
        if key is None:
            missing = "missing API key: send Authorization: Bearer <key>"
            return Refusal("unauthenticated", 401, missing, {"WWW-Authenticate": _CHALLENGE})
        directory: Directory = scope["app"].state.accounts
        try:
            return await directory.authenticate(key)
        except Unauthenticated as exc:
            challenge = f'{_CHALLENGE}, error="invalid_token"'
            return Refusal(
                "unauthenticated", 401, f"invalid API key ({exc})", {"WWW-Authenticate": challenge}
            )
        except Forbidden as exc:
            return Refusal("forbidden", 403, str(exc))
        except Unavailable:
            error = "the API key cannot be checked now (database unavailable): retry later"
            return Refusal("auth_unavailable", 503, error, {"Retry-After": "1"})

    async def _limit(self, scope: Scope, receive: Receive, send: Send, account: Account) -> Send | None:
        """Admit one order of `account`, or answer 429 (None). The returned `send` adds the quota headers
        and counts the order as open when it is accepted."""
        limits: OrderLimits | None = getattr(scope["app"].state, "order_limits", None)
        if limits is None:
            return send
        refused = await limits.admit(account.name)
        if refused is not None:
            REFUSED.labels("order_rate" if refused.field == "orderRate" else "open_orders").inc()
            response = error_response(
                429, refused.error, [Problem(refused.field, refused.message)], refused.headers
            )
            await response(scope, receive, send)
            return None
        quota = [(k.lower().encode(), v.encode()) for k, v in limits.headers(account.name).items()]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *quota]
                replayed = any(k == b"idempotent-replayed" for k, _ in message["headers"])
                if message["status"] == 201 and not replayed:
                    limits.accepted(account.name)
            await send(message)

        return counted


def _credentials(headers: Headers, kind: str) -> tuple[str | None, str | None]:
    """(the key, the subprotocol to accept with): from `Authorization`, else from the subprotocols offered."""
    auth = headers.get("authorization")
    offered: str | None = None
    key: str | None = None
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            key = value.strip()
    if kind == "websocket":
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if WS_PROTOCOL in protocols:
            offered = WS_PROTOCOL
        if key is None:
            key = next((p[len(BEARER_PROTOCOL) :] for p in protocols if p.startswith(BEARER_PROTOCOL)), None)
    return key, offered


def origin_allowed(headers: Headers, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the API's own origin (same host and port), or one of `allowed`."""
    origin = headers.get("origin")
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in allowed:
        return True
    host = headers.get("host", "").strip().lower()
    _, sep, netloc = origin.partition("://")
    return bool(sep) and bool(host) and netloc == host


def _accept_with(send: Send, subprotocol: str) -> Send:
    """Accept the handshake with the protocol the browser offered (it fails the socket otherwise)."""

    async def accept(message: Message) -> None:
        if message["type"] == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": subprotocol}
        await send(message)

    return accept


async def _deny(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    """Answer an HTTP request, or refuse a WebSocket handshake, with our JSON error (counted by reason)."""
    REFUSED.labels(refusal.reason).inc()
    log.debug("refused %s %s: %d %s", scope["type"], scope["path"], refusal.status, refusal.error)
    response = error_response(refusal.status, refusal.error, headers=refusal.headers)
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        # A server without the denial-response extension: a close before accept is an HTTP 403.
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.error[:120]})
        return
    if scope["type"] == "websocket":
        denials.denied()
    await response(scope, receive, send)
