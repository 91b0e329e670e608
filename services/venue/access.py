"""Who may call the venue server, and how much they may send: one ASGI middleware in front of every route.

- **The shared secret.** With a secret configured, every request but `GET /health` needs
  `Authorization: Bearer <secret>` (compared in constant time); without it: 401 `{error, kind}` with
  `WWW-Authenticate: Bearer`, before any route runs (an unknown path answers 401 too, so nothing leaks).
  Without a secret the venue is open: `VenueConfig.check_exposure` allows that on loopback only.
- **The body size.** A declared `Content-Length` above the limit is refused at once (413); a body sent
  without one (chunked) is counted as it arrives and refused when it passes the limit, so no request holds
  more than `max_body` bytes of the server's memory whatever it claims.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import Any

import orjson

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 500-submit batch (the client's largest) is ~100 KiB
OPEN_PATHS = frozenset({"/health"})  # liveness checks carry no secret

Scope = dict[str, Any]
Receive = Any
Send = Any


class BodyTooLarge(Exception):
    """A request body passed the limit while it was being read (the app answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.reason = str(self)


class VenueAccess:
    def __init__(
        self,
        app: Any,
        *,
        secret: str = "",
        max_body: int = MAX_BODY_BYTES,
        open_paths: Collection[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self._secret = secret.encode() if secret else None
        self._max_body = max_body
        self._open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the venue has no WebSocket routes
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self._secret is not None and scope["path"] not in self._open_paths:
            if not self._authorized(headers.get(b"authorization", b"")):
                await _reply(
                    send,
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <VENUE_SECRET>)",
                    "unauthorized",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max_body):
            await _reply(send, 413, f"request body exceeds {self._max_body} bytes", "too_large")
            return
        received = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body:
                    raise BodyTooLarge(self._max_body)
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # when the app itself did not turn it into a 413
            if started:
                raise
            await _reply(send, 413, exc.reason, "too_large")

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        assert self._secret is not None
        # compare_digest on every request, even a malformed one: the time taken says nothing of the secret.
        matches = hmac.compare_digest(token.strip(), self._secret)
        return scheme.lower() == b"bearer" and matches


async def _reply(
    send: Send, status: int, error: str, kind: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps({"error": error, "kind": kind})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
