"""The accounts directory against the real database: keys verified from a bounded cache, a revocation or a
disabled account seen at once through NOTIFY (and within the TTL without it), and a database that does not
answer failing closed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.accounts import store
from services.accounts.directory import Directory, Forbidden, Unauthenticated, Unavailable
from services.config import Settings

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def directory(url: str, **kwargs: object) -> AsyncIterator[Directory]:
    pool = await asyncpg.create_pool(url, min_size=0, max_size=4)
    found = Directory(pool, url, **kwargs)  # type: ignore[arg-type]
    await found.start()
    try:
        yield found
    finally:
        await found.stop()
        await pool.close()


async def until(predicate: object, timeout: float, what: str) -> float:
    """Seconds until the awaited predicate held (polled every 20 ms); fails after `timeout`."""
    start = time.monotonic()
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def refused(d: Directory, key: str, kind: type[Exception]) -> bool:
    try:
        await d.authenticate(key)
    except kind:
        return True
    return False


async def test_a_key_is_checked_once_per_ttl_and_revocation_is_seen_at_once(
    infra: Settings, unique: str
) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        key = await store.create_account(conn, f"dir-{unique}")
        async with directory(infra.database_url, ttl_s=5.0) as d:
            await asyncio.wait_for(d.listening.wait(), 10)
            accounts = await asyncio.gather(*(d.authenticate(key.key) for _ in range(100)))
            assert {a.name for a in accounts} == {f"dir-{unique}"} and accounts[0].key_id == key.key_id
            assert not accounts[0].operator
            assert d.lookups == 1, "100 concurrent requests, one look-up"
            await store.revoke_key(conn, key.key_id)
            took = await until(lambda: refused(d, key.key, Unauthenticated), 5, "the revocation")
            assert took < 1.0, "NOTIFY clears the cached key at once, well inside the TTL"
    finally:
        await conn.close()


async def test_without_notifications_the_ttl_bounds_how_long_a_revoked_key_works(
    infra: Settings, unique: str
) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        key = await store.create_account(conn, f"ttl-{unique}")
        async with directory(infra.database_url, ttl_s=1.0, listen=False) as d:
            await d.authenticate(key.key)
            await store.revoke_key(conn, key.key_id)
            took = await until(lambda: refused(d, key.key, Unauthenticated), 5, "the revocation")
            assert took <= 1.5
    finally:
        await conn.close()


async def test_a_disabled_account_is_forbidden_and_enabled_again(infra: Settings, unique: str) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        name = f"dis-{unique}"
        key = await store.create_account(conn, name)
        async with directory(infra.database_url, ttl_s=5.0) as d:
            await asyncio.wait_for(d.listening.wait(), 10)
            await d.authenticate(key.key)
            await store.set_disabled(conn, name, True)
            await until(lambda: refused(d, key.key, Forbidden), 5, "the disabled account")
            await store.set_disabled(conn, name, False)

            async def works() -> bool:
                return not await refused(d, key.key, Forbidden)

            await until(works, 5, "the account enabled again")
    finally:
        await conn.close()


async def test_a_database_that_does_not_answer_fails_closed(infra: Settings, unique: str) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        key = await store.create_account(conn, f"down-{unique}")
    finally:
        await conn.close()
    down = "postgresql://oee@127.0.0.1:1/oee"
    async with directory(down, ttl_s=1.0, listen=False, query_timeout_s=0.5) as d:
        with pytest.raises(Unavailable):
            await d.authenticate(key.key)
        with pytest.raises(Unauthenticated):  # a malformed key needs no database to be refused
            await d.authenticate("not-a-key")


async def test_made_up_key_ids_are_bounded_in_memory(infra: Settings) -> None:
    async with directory(infra.database_url, ttl_s=5.0, max_keys=50, listen=False) as d:
        for i in range(200):
            with pytest.raises(Unauthenticated):
                await d.authenticate(f"oee_{i:012x}_" + "A" * 43)
        assert len(d._cache) == 50 and d.lookups == 200
        with pytest.raises(Unauthenticated):
            await d.authenticate(f"oee_{199:012x}_" + "A" * 43)
        assert d.lookups == 200, "an unknown id is remembered (briefly) too"
