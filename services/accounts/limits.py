"""Per-account order limits: a token bucket for the rate, and a ceiling on orders still open.

`TokenBucket` is pure (the caller passes the time). `OrderLimits` keeps one bucket per account in this
process (so N API processes admit up to N times the rate: a per-process limit needs no coordination and
still bounds what one account can do to one process) and counts open orders from the projection, asked at
most once a second per account, plus the orders this process accepted since it asked: a burst is stopped
by the bucket long before the projection could lag behind by more than a second's worth of orders.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("oee.accounts")


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second up to `burst`; each order takes one."""

    rate: float
    burst: int
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, burst, float(burst), now)

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one will be there (nothing taken)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def reset_in(self) -> float:
        """Seconds until the bucket is full again (the IETF `RateLimit` header's `t`)."""
        return (self.burst - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Refused:
    """Why an order is refused (429) and the headers that say when to come back."""

    error: str
    field: str
    message: str
    headers: dict[str, str]


@dataclass(slots=True)
class _Open:
    counted: int = 0  # open orders in the projection when last asked
    since: int = 0  # orders this process accepted since then
    asked_at: float = -math.inf
    asking: asyncio.Task[None] | None = None


OpenCounter = Callable[[str], Awaitable[int]]
"""account -> its orders not yet confirmed or failed, per the projection."""


class OrderLimits:
    def __init__(
        self,
        rate: float,
        burst: int,
        max_open: int,
        count_open: OpenCounter | None = None,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_open = max_open
        self._count_open = count_open
        self.refresh_s = refresh_s
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._open: dict[str, _Open] = {}

    @property
    def policy(self) -> str:
        """The IETF draft's `RateLimit-Policy` value: `burst` orders, refilled at `rate` per second."""
        window = max(1, round(self.burst / self.rate)) if self.rate > 0 else 1
        return f'"orders";q={self.burst};w={window}'

    async def admit(self, account: str) -> Refused | None:
        """None when `account` may place one more order now (its token is taken), else why not."""
        now = self._clock()
        if self.max_open > 0 and self._count_open is not None:
            open_now = await self._open_orders(account, now)
            if open_now >= self.max_open:
                return Refused(
                    f"too many open orders: at most {self.max_open} per account (ACCOUNT_MAX_OPEN_ORDERS)",
                    "openOrders",
                    f"{open_now} orders are still open; wait until some are confirmed or failed",
                    {"Retry-After": "1"},
                )
        if self.rate <= 0:
            return None
        bucket = self._buckets.get(account)
        if bucket is None:
            bucket = self._buckets[account] = TokenBucket.full(self.rate, self.burst, now)
        wait = bucket.take(now)
        if wait > 0:
            return Refused(
                f"too many orders: at most {self.rate:g} per second per account, bursts of {self.burst}"
                " (ACCOUNT_ORDER_RATE, ACCOUNT_ORDER_BURST)",
                "orderRate",
                f"retry in {wait:.2f} s",
                {
                    "Retry-After": str(max(1, math.ceil(wait))),
                    "RateLimit": f'"orders";r=0;t={max(1, math.ceil(wait))}',
                    "RateLimit-Policy": self.policy,
                },
            )
        return None

    def headers(self, account: str) -> dict[str, str]:
        """`RateLimit` / `RateLimit-Policy` for an admitted order (what remains of the account's quota)."""
        bucket = self._buckets.get(account)
        if bucket is None or self.rate <= 0:
            return {}
        reset = max(0, math.ceil(bucket.reset_in()))
        return {"RateLimit": f'"orders";r={int(bucket.tokens)};t={reset}', "RateLimit-Policy": self.policy}

    def accepted(self, account: str) -> None:
        """An order of `account` was accepted here (it is open until the projection says otherwise)."""
        entry = self._open.get(account)
        if entry is not None:
            entry.since += 1

    async def _open_orders(self, account: str, now: float) -> int:
        entry = self._open.get(account)
        if entry is None:
            entry = self._open[account] = _Open()
        if now - entry.asked_at >= self.refresh_s:
            if entry.asking is None:
                entry.asking = asyncio.create_task(self._ask(account, entry))
            # Wait for the fresh count only when it matters: never counted, or at the limit by the old one
            # (refuse on what is true now, not on what was true a second ago); else it lands in the background.
            if entry.asked_at == -math.inf or entry.counted + entry.since >= self.max_open:
                await asyncio.shield(entry.asking)
        return entry.counted + entry.since

    async def _ask(self, account: str, entry: _Open) -> None:
        assert self._count_open is not None
        try:
            since_before = entry.since
            counted = await self._count_open(account)
            entry.counted, entry.since = counted, entry.since - since_before
        except Exception as exc:  # the projection is a guide here, not a gate: keep the last count
            log.warning("open orders of %s not counted: %r", account, exc)
        finally:
            entry.asked_at = self._clock()
            entry.asking = None
