"""The client without asyncio: each call runs the async client's on a private event loop.

    with Client("http://localhost:3000") as api:
        accepted = api.place("sell", 1.5, "SOL", "USDC")
        for frame in api.watch(accepted.order_id):
            print(frame.seq, frame.status)

Not for use inside a running event loop (use `AsyncClient` there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from types import TracebackType
from typing import Any

from services.client.client import AsyncClient, Frame
from services.spec.wire import CancelAccepted, Order, OrderAccepted, OrderEvents, OrderPage, Side


class Client:
    """`AsyncClient`'s methods, blocking."""

    def __init__(self, base_url: str = "http://127.0.0.1:3000", api_key: str | None = None, **kwargs: Any):
        self._runner = asyncio.Runner()
        self._async = self._runner.run(_make(base_url, api_key, kwargs))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._async.close())
        finally:
            self._runner.close()

    def place(
        self,
        side: Side,
        amount: float,
        base: str,
        quote: str,
        *,
        slippage_bps: int | None = None,
        idempotency_key: str | None = None,
        limit_price: float | None = None,
        max_price: float | None = None,
        min_liquidity: float | None = None,
        expires_at: str | None = None,
    ) -> OrderAccepted:
        return self._runner.run(
            self._async.place(
                side,
                amount,
                base,
                quote,
                slippage_bps=slippage_bps,
                idempotency_key=idempotency_key,
                limit_price=limit_price,
                max_price=max_price,
                min_liquidity=min_liquidity,
                expires_at=expires_at,
            )
        )

    def get(self, order_id: str, *, min_seq: int | None = None, wait_ms: int | None = None) -> Order:
        return self._runner.run(self._async.get(order_id, min_seq=min_seq, wait_ms=wait_ms))

    def list(self, **filters: Any) -> OrderPage:
        return self._runner.run(self._async.list(**filters))

    def events(self, order_id: str) -> OrderEvents:
        return self._runner.run(self._async.events(order_id))

    def cancel(self, order_id: str) -> CancelAccepted:
        return self._runner.run(self._async.cancel(order_id))

    def watch(self, order_id: str, *, from_seq: int = 0, keep_open: bool = False) -> Iterator[Frame]:
        frames = self._async.watch(order_id, from_seq=from_seq, keep_open=keep_open)
        try:
            while True:
                try:
                    yield self._runner.run(_next(frames))
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(frames.aclose())


async def _next(frames: AsyncGenerator[Frame, None]) -> Frame:
    return await anext(frames)


async def _make(base_url: str, api_key: str | None, kwargs: dict[str, Any]) -> AsyncClient:
    # Built inside the runner's loop: httpx binds nothing to a loop at construction, but be explicit.
    return AsyncClient(base_url, api_key, **kwargs)
