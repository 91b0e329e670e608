"""The HTTP edge's bounds, read from `HTTP_*` variables: what any client may hold of a process before
it is answered (408, 431, 503) and cut off. The API (`oee api`) and the standalone gateway (`oee gateway`)
both serve through them (`services.serving.protocols`).

`HTTP_ENV_VARS` documents each variable with its default in the shape of `services.config.ENV_VARS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import env_int

HTTP_ENV_VARS: dict[str, tuple[str, str]] = {
    "HTTP_MAX_CONNECTIONS": (
        "4096",
        "open HTTP connections per process (WebSockets count in GATEWAY_MAX_CONNECTIONS); more get 503",
    ),
    "HTTP_REQUEST_TIMEOUT_MS": (
        "5000",
        "a request's line, headers and body must arrive within this of its first byte; else 408, closed",
    ),
    "HTTP_MAX_HEADER_BYTES": ("16384", "request line and headers together; larger answers 431"),
    "HTTP_SEND_TIMEOUT_MS": (
        "10000",
        "a client (HTTP or WebSocket) that takes nothing of what is sent to it for this long is disconnected",
    ),
}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-process bounds of the HTTP edge. The defaults suit production; tests shrink them."""

    max_connections: int = 4096
    request_timeout_s: float = 5.0
    max_header_bytes: int = 16 * 1024
    send_timeout_s: float = 10.0
    # After its handler returned, a WebSocket whose peer neither reads nor closes is aborted after this
    # (uvicorn's own close handshake waits 10 s, then `close()`, which never ends while data is unsent).
    ws_linger_s: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpLimits:
        env = os.environ if env is None else env
        return cls(
            max_connections=_int(env, "HTTP_MAX_CONNECTIONS", 1, 10_000_000),
            request_timeout_s=_int(env, "HTTP_REQUEST_TIMEOUT_MS", 10, 600_000) / 1000,
            max_header_bytes=_int(env, "HTTP_MAX_HEADER_BYTES", 1024, 1024 * 1024),
            send_timeout_s=_int(env, "HTTP_SEND_TIMEOUT_MS", 10, 3_600_000) / 1000,
        )


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, HTTP_ENV_VARS)
