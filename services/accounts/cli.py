"""`oee accounts`: create accounts and keys, list them, revoke a key, disable or enable an account.

    oee accounts create NAME [--operator]   a new account; its API key alone on the last line of stdout
    oee accounts key NAME                   another key for NAME (rotation); the key on the last line
    oee accounts list                       accounts, their key ids and states (never a key)
    oee accounts revoke KEY_ID              the key is refused (401) by every API process within 5 s
    oee accounts disable NAME | enable NAME every key of NAME answers 403 / works again

So `KEY=$(oee accounts create alice | tail -1)` works. A key is shown once, when it is made: only its hash
is stored. The command applies the `oee_state` migrations first (idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

import asyncpg

from projections.db import dsn
from projections.migrations import migrate_state
from services.accounts import store
from services.accounts.keys import NewKey, check_account_name, is_key_id
from services.accounts.model import AccountError
from services.config import Settings

ACTIONS = ("create", "key", "list", "revoke", "disable", "enable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument(
        "target", nargs="?", help="an account name (create, key, disable, enable) or a key id (revoke)"
    )
    parser.add_argument(
        "--operator", action="store_true", help="create: the account may use the operator routes"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Do `args.action`; raises `AccountError` (printed in one line by the CLI) when it cannot be done."""
    if args.action != "list" and not args.target:
        what = "a key id" if args.action == "revoke" else "an account name"
        raise AccountError(f"`oee accounts {args.action}` needs {what}")
    if args.operator and args.action != "create":
        raise AccountError("--operator applies to `oee accounts create` only")
    if args.action == "revoke":
        if not is_key_id(args.target):
            raise AccountError(f"{args.target[:40]!r} is not a key id (12 hex characters, as `list` shows)")
    elif args.target is not None:
        try:
            check_account_name(args.target)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
    return asyncio.run(_run(settings.database_url, args))


async def _run(url: str, args: argparse.Namespace) -> int:
    await migrate_state(dsn(url))
    conn = await asyncpg.connect(dsn(url))
    try:
        match args.action:
            case "create":
                key = await store.create_account(conn, args.target, operator=args.operator)
                kind = "operator account" if args.operator else "account"
                _show_key(f"created {kind} {args.target}", key)
            case "key":
                _show_key(f"new key for {args.target}", await store.issue_key(conn, args.target))
            case "revoke":
                account = await store.revoke_key(conn, args.target)
                print(f"revoked key {args.target} of {account}")
            case "disable" | "enable":
                await store.set_disabled(conn, args.target, args.action == "disable")
                print(f"{args.action}d account {args.target}")
            case "list":
                _list(await store.list_accounts(conn))
    finally:
        await conn.close()
    return 0


def _show_key(what: str, key: NewKey) -> None:
    print(f"{what}: key id {key.key_id} (shown once, stored only hashed; send it as Authorization: Bearer)")
    print(key.key)


def _list(accounts: list[store.AccountRow]) -> None:
    if not accounts:
        print("no accounts (`oee accounts create NAME`)")
        return
    print(f"{'account':<24} {'role':<9} {'state':<22} keys")
    for a in accounts:
        state = f"disabled {_at(a.disabled_at)}" if a.disabled_at else "active"
        keys = ", ".join(
            k.key_id + (f" (revoked {_at(k.revoked_at)})" if k.revoked_at else "") for k in a.keys
        )
        print(f"{a.name:<24} {'operator' if a.operator else 'trader':<9} {state:<22} {keys or '-'}")


def _at(when: datetime | None) -> str:
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M")
