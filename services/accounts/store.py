"""Accounts and keys in PostgreSQL (`oee_state.accounts`, `oee_state.api_keys`): the statements behind the CLI
and the directory's one look-up. Every change fires `NOTIFY oee_accounts` (a trigger, sql/state/0002)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.accounts.keys import NewKey, check_account_name, make_key
from services.accounts.model import AccountError, KeyRecord

NOTIFY_CHANNEL = "oee_accounts"

_LOOKUP = """
SELECT k.key_id, k.account, k.key_hash, k.revoked_at IS NOT NULL AS revoked,
       a.operator, a.disabled_at IS NOT NULL AS disabled
FROM oee_state.api_keys k JOIN oee_state.accounts a ON a.name = k.account
WHERE k.key_id = $1
"""


@dataclass(frozen=True, slots=True)
class AccountRow:
    name: str
    operator: bool
    disabled_at: datetime | None
    created_at: datetime
    keys: tuple[KeyRow, ...]


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, key_id: str) -> KeyRecord | None:
    row = await conn.fetchrow(_LOOKUP, key_id)
    if row is None:
        return None
    return KeyRecord(
        row["key_id"],
        row["account"],
        bytes(row["key_hash"]),
        row["operator"],
        row["revoked"],
        row["disabled"],
    )


async def create_account(conn: asyncpg.Connection, name: str, *, operator: bool = False) -> NewKey:
    """A new account with its first key."""
    check_account_name(name)
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO oee_state.accounts (name, operator) VALUES ($1, $2)"
            " ON CONFLICT (name) DO NOTHING RETURNING name",
            name,
            operator,
        )
        if inserted is None:
            raise AccountError(f"account {name!r} exists already (`oee accounts key {name}` adds a key)")
        return await _insert_key(conn, name)


async def issue_key(conn: asyncpg.Connection, name: str) -> NewKey:
    """Another key for an existing account (rotation: issue, switch clients, revoke the old one)."""
    async with conn.transaction():
        disabled = await conn.fetchval(
            "SELECT disabled_at IS NOT NULL FROM oee_state.accounts WHERE name = $1 FOR UPDATE", name
        )
        if disabled is None:
            raise AccountError(f"no account {name!r}")
        if disabled:
            raise AccountError(f"account {name!r} is disabled")
        return await _insert_key(conn, name)


async def _insert_key(conn: asyncpg.Connection, name: str) -> NewKey:
    for _ in range(5):  # 48-bit key ids: a collision is rare, but then the next try gets a fresh one
        key = make_key()
        done = await conn.fetchval(
            "INSERT INTO oee_state.api_keys (key_id, account, key_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (key_id) DO NOTHING RETURNING key_id",
            key.key_id,
            name,
            key.key_hash,
        )
        if done is not None:
            return key
    raise AccountError("could not find a free key id")  # pragma: no cover - 5 collisions in 2^48


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> str:
    """Revoke a key for good; returns its account. Every API process refuses it within seconds."""
    account = await conn.fetchval(
        "UPDATE oee_state.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1"
        " RETURNING account",
        key_id,
    )
    if account is None:
        raise AccountError(f"no key {key_id!r}")
    return str(account)


async def set_disabled(conn: asyncpg.Connection, name: str, disabled: bool) -> None:
    """Disable (every key answers 403) or enable an account again."""
    done = await conn.fetchval(
        "UPDATE oee_state.accounts SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END"
        " WHERE name = $1 RETURNING name",
        name,
        disabled,
    )
    if done is None:
        raise AccountError(f"no account {name!r}")


async def list_accounts(conn: asyncpg.Connection) -> list[AccountRow]:
    accounts = await conn.fetch("SELECT * FROM oee_state.accounts ORDER BY name")
    keys = await conn.fetch(
        "SELECT key_id, account, created_at, revoked_at FROM oee_state.api_keys ORDER BY created_at"
    )
    by_account: dict[str, list[KeyRow]] = {}
    for k in keys:
        by_account.setdefault(k["account"], []).append(KeyRow(k["key_id"], k["created_at"], k["revoked_at"]))
    return [
        AccountRow(
            a["name"], a["operator"], a["disabled_at"], a["created_at"], tuple(by_account.get(a["name"], ()))
        )
        for a in accounts
    ]
