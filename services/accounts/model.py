"""What the rest of the system knows of an account: its name and whether it may use the operator routes."""

from __future__ import annotations

from dataclasses import dataclass

from events.envelope import LOCAL_ACCOUNT


@dataclass(frozen=True, slots=True)
class Account:
    """An authenticated caller. `key_id` names the key it used (None under `AUTH=off`): logs show only it."""

    name: str
    operator: bool = False
    key_id: str | None = None


LOCAL = Account(LOCAL_ACCOUNT, operator=True)
"""`AUTH=off`: every request is the implicit `local` account, which may use every route."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One stored key with its account, as the directory caches it."""

    key_id: str
    account: str
    key_hash: bytes
    operator: bool
    revoked: bool
    disabled: bool


class AccountError(Exception):
    """An account command that cannot be done (exists already, unknown...): the message says why."""
