"""Adapter for one uvicorn quirk: a WebSocket handshake refused with the ASGI denial-response extension is
logged as an ERROR by the `websockets-sansio` implementation ("ASGI callable returned without completing
handshake."), because it never marks the handshake done after sending the denial (uvicorn PR #3138, open).

Every unauthenticated handshake would so raise an ERROR line: log noise an attacker could produce at will, and
alerts on `uvicorn.error` firing for what is a normal refusal. The edge marks the task that sent a denial
(a context variable: uvicorn logs from the same task, right after the app returned), and this filter drops
that one message for those tasks only; a genuine incomplete handshake anywhere else still logs.
tests/integration/test_accounts.py fails if the message appears for a refusal.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

_DENIED: ContextVar[bool] = ContextVar("oee_websocket_denied", default=False)
_MESSAGE = "ASGI callable returned without completing handshake."


def denied() -> None:
    """Mark the current task: it refused its WebSocket handshake with a denial response."""
    _DENIED.set(True)


class _DropDeniedHandshake(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_DENIED.get() and record.getMessage() == _MESSAGE)


_FILTER = _DropDeniedHandshake()


def install() -> None:
    """Attach the filter to uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
