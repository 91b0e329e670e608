"""Who may open one more WebSocket: at most so many per process, and so many per account. Pure.

The account is whatever authentication put in the connection's scope (`scope["state"]["account"]`, set at
the handshake); without one (`AUTH=off`) every connection is the implicit `local` account's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from services.gateway import protocol

__all__ = ["LOCAL_ACCOUNT", "Admission", "account_of"]

LOCAL_ACCOUNT = "local"


def account_of(scope: Mapping[str, Any]) -> str:
    """The account the edge authenticated for this connection (`services.http.edge` puts an `Account` in the
    scope's state; its streams show only its orders): a string as is, an object by its `id` (or `name`),
    else `local`."""
    state = scope.get("state")
    account = state.get("account") if isinstance(state, Mapping) else None
    if account is None:
        return LOCAL_ACCOUNT
    if isinstance(account, str):
        return account
    for attribute in ("id", "name"):
        value = getattr(account, attribute, None)
        if value is not None:
            return str(value)
    return str(account)


class Admission:
    """Counts open connections, in all and per account."""

    def __init__(self, max_connections: int, max_per_account: int) -> None:
        self.max_connections = max_connections
        self.max_per_account = max_per_account
        self.open = 0
        self._by_account: Counter[str] = Counter()

    def admit(self, account: str) -> tuple[int, str] | None:
        """Count one more connection of `account` in; or, when it may not, the close code and reason."""
        if self.open >= self.max_connections:
            return protocol.TRY_AGAIN_LATER, "gateway at capacity: retry later"
        if self._by_account[account] >= self.max_per_account:
            limit = self.max_per_account
            return protocol.POLICY_VIOLATION, f"at most {limit} connections per account: close one first"
        self.open += 1
        self._by_account[account] += 1
        return None

    def release(self, account: str) -> None:
        self.open -= 1
        self._by_account[account] -= 1
        if self._by_account[account] <= 0:
            del self._by_account[account]

    def accounts(self) -> int:
        return len(self._by_account)
