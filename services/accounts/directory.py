"""Who holds this key? The API's one question about accounts, answered from a small cache.

A verified key is trusted for `ttl` seconds, then PostgreSQL is asked again (one primary-key probe). Every
change to an account or key fires `NOTIFY oee_accounts` (a trigger), and each process LISTENs: it drops what
it cached about that key or account at once, so a revocation or a disabled account holds everywhere within
a fraction of a second, and within `ttl` (≤ 5 s) even if a notification is lost. When the listener
reconnects the whole cache is dropped (notifications may have been missed meanwhile).

Fails closed: a key the cache cannot vouch for while PostgreSQL does not answer is `Unavailable` (503),
never let through. Unknown key ids are cached too (briefly), so a flood of made-up keys costs one query each
per `ttl`, and the cache is bounded (`max_keys`, least recently used out first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import asyncpg
import orjson

from services.accounts import store
from services.accounts.keys import key_id_of, matches
from services.accounts.model import Account, KeyRecord
from services.pglisten import listen_forever

log = logging.getLogger("oee.accounts")


class Unauthenticated(Exception):
    """No key, or not a valid one (malformed, unknown, wrong secret, revoked): 401."""


class Forbidden(Exception):
    """A valid key of a disabled account: 403."""


class Unavailable(Exception):
    """The key could not be checked (the database does not answer): 503, fail closed."""


class Directory:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        *,
        ttl_s: float = 3.0,
        max_keys: int = 10_000,
        listen: bool = True,
        query_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self.listen = listen
        self.query_timeout_s = query_timeout_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[KeyRecord | None, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.lookups = 0  # database look-ups made (tests and benchmarks read it)

    async def start(self) -> None:
        if self.listen:
            self._task = asyncio.create_task(self._listen(), name="accounts-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def authenticate(self, key: str) -> Account:
        """The account holding `key`; raises `Unauthenticated`, `Forbidden` or `Unavailable`."""
        key_id = key_id_of(key)
        if key_id is None:
            raise Unauthenticated("not an API key of this system")
        record = await self._record(key_id)
        if record is None or record.revoked or not matches(key, record.key_hash):
            raise Unauthenticated(f"key {key_id} is unknown or revoked")
        if record.disabled:
            raise Forbidden(f"account {record.account} is disabled")
        return Account(record.account, record.operator, key_id)

    def forget(self, key_id: str | None = None, account: str | None = None) -> None:
        """Drop what is cached about a key, an account's keys, or (no argument) everything."""
        if key_id is None and account is None:
            self._cache.clear()
            return
        if key_id is not None:
            self._cache.pop(key_id, None)
        if account is not None:
            for kid in [k for k, (r, _) in self._cache.items() if r is not None and r.account == account]:
                del self._cache[kid]

    async def _record(self, key_id: str) -> KeyRecord | None:
        cached = self._cache.get(key_id)
        now = self._clock()
        if cached is not None and now - cached[1] < self.ttl_s:
            self._cache.move_to_end(key_id)
            return cached[0]
        pending = self._pending.get(key_id)
        if pending is None:  # one look-up per key id at a time, however many requests wait on it
            pending = asyncio.get_running_loop().create_future()
            self._pending[key_id] = pending
            try:
                record = await self._fetch(key_id)
            except BaseException as exc:
                pending.set_exception(exc if isinstance(exc, Unavailable) else Unavailable(str(exc)))
                pending.exception()  # retrieved here: a look-up nobody else awaited must not warn
                raise
            finally:
                del self._pending[key_id]
            pending.set_result(record)
            self._remember(key_id, record, now)
            return record
        return await asyncio.shield(pending)

    async def _fetch(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        try:
            async with asyncio.timeout(self.query_timeout_s):
                return await store.lookup(self._pool, key_id)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("key %s could not be checked: %r", key_id, exc)
            raise Unavailable("accounts database unavailable") from exc

    def _remember(self, key_id: str, record: KeyRecord | None, at: float) -> None:
        self._cache[key_id] = (record, at)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self.max_keys:
            self._cache.popitem(last=False)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            change = orjson.loads(payload)
        except orjson.JSONDecodeError:
            change = {}
        if not isinstance(change, dict) or not (change.get("key_id") or change.get("account")):
            self.forget()
        else:
            self.forget(change.get("key_id"), change.get("account"))

    async def _listen(self) -> None:
        def listening() -> None:
            self.forget()  # changes made while nobody listened were not announced to us
            self.listening.set()

        await listen_forever(
            self._dsn, store.NOTIFY_CHANNEL, self._on_notify, application_name="oee-accounts",
            on_listening=listening, on_lost=self.listening.clear, what="accounts listener",
        )  # fmt: skip
