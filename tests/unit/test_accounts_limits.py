"""The per-account order limits: the token bucket (pure) and the open-orders ceiling (with a counter)."""

from __future__ import annotations

import asyncio

import pytest

from services.accounts.limits import OrderLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # the next token in half a second
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(10.0) == 0.0 and bucket.tokens == pytest.approx(2.0), "refills up to the burst only"
    assert bucket.reset_in() == pytest.approx(0.5)


async def test_limits_refuse_past_the_rate_per_account() -> None:
    clock = Clock()
    limits = OrderLimits(rate=1.0, burst=2, max_open=0, clock=clock)
    assert await limits.admit("a") is None and await limits.admit("a") is None
    refused = await limits.admit("a")
    assert refused is not None and refused.field == "orderRate"
    assert refused.headers["Retry-After"] == "1" and refused.headers["RateLimit-Policy"] == '"orders";q=2;w=2'
    assert await limits.admit("b") is None, "each account has its own bucket"
    clock.now += 1.0
    assert await limits.admit("a") is None


async def test_rate_zero_means_no_rate_limit() -> None:
    limits = OrderLimits(rate=0, burst=1, max_open=0)
    assert all([await limits.admit("a") is None for _ in range(1000)])
    assert limits.headers("a") == {}


async def test_open_orders_count_the_projection_plus_what_was_accepted_since() -> None:
    clock = Clock()
    asked: list[str] = []
    projected = {"a": 3}

    async def count(account: str) -> int:
        asked.append(account)
        return projected.get(account, 0)

    limits = OrderLimits(rate=0, burst=1, max_open=5, count_open=count, clock=clock)
    assert await limits.admit("a") is None  # 3 open
    limits.accepted("a")
    assert await limits.admit("a") is None  # 4 open (3 projected + 1 since): not asked again within 1 s
    limits.accepted("a")
    refused = await limits.admit("a")  # 5 open
    assert refused is not None and refused.field == "openOrders" and "at most 5" in refused.error
    assert asked == ["a"]
    clock.now += 0.5
    assert (await limits.admit("a")) is not None and asked == ["a"], "within the second: the count stands"
    projected["a"] = 1  # two finished meanwhile, and the projection caught up with the two accepted
    clock.now += 1.0
    assert await limits.admit("a") is None, "at the limit by the old count: the fresh one is awaited"
    assert asked == ["a", "a"]
    limits.accepted("a")
    clock.now += 1.0  # due again, but 2 of 5 by the last count: admitted now, counted in the background
    assert await limits.admit("a") is None
    assert asked == ["a", "a"]
    await asyncio.sleep(0)
    assert asked == ["a", "a", "a"]


async def test_a_counter_that_fails_keeps_the_last_count() -> None:
    clock = Clock()

    async def broken(account: str) -> int:
        raise OSError("database down")

    limits = OrderLimits(rate=0, burst=1, max_open=2, count_open=broken, clock=clock)
    assert await limits.admit("a") is None  # nothing known: 0 open
