"""The HTTP edge's bounds, each declared once with its `HTTP_*` variable (`services.envvars`): what any
client may hold of a process before it is answered (408, 431, 503) and cut off. The API (`oee api`) and the
standalone gateway (`oee gateway`) both serve through them (`services.serving.protocols`).

`HTTP_ENV_VARS` is derived from the declarations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import integer, millis, read, table


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-process bounds of the HTTP edge. The defaults suit production; tests shrink them."""

    max_connections: int = integer(
        "HTTP_MAX_CONNECTIONS", 4096,
        "open HTTP connections per process (WebSockets count in GATEWAY_MAX_CONNECTIONS); more get 503",
        1, 10_000_000,
    )  # fmt: skip
    request_timeout_s: float = millis(
        "HTTP_REQUEST_TIMEOUT_MS", 5.0,
        "a request's line, headers and body must arrive within this of its first byte; else 408, closed",
        10, 600_000,
    )  # fmt: skip
    max_header_bytes: int = integer(
        "HTTP_MAX_HEADER_BYTES",
        16 * 1024,
        "request line and headers together; larger answers 431",
        1024,
        1024 * 1024,
    )
    send_timeout_s: float = millis(
        "HTTP_SEND_TIMEOUT_MS", 10.0,
        "a client (HTTP or WebSocket) that takes nothing of what is sent to it for this long is disconnected",
        10, 3_600_000,
    )  # fmt: skip
    # After its handler returned, a WebSocket whose peer neither reads nor closes is aborted after this
    # (uvicorn's own close handshake waits 10 s, then `close()`, which never ends while data is unsent).
    ws_linger_s: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpLimits:
        return read(cls, os.environ if env is None else env)


HTTP_ENV_VARS = table(HttpLimits)
