"""A small typed client of the API: place, get, list, read events, cancel, and watch an order's frames.

    async with AsyncClient("http://localhost:3000") as api:       # key: OEE_API_KEY, or api_key=...
        accepted = await api.place("sell", 1.5, "SOL", "USDC", idempotency_key="my-order-1")
        async for frame in api.watch(accepted.order_id):           # history, then live, to the end
            print(frame.seq, frame.status)
        order = await api.get(accepted.order_id)

Answers are decoded into `services.spec.wire`'s types (the OpenAPI document's schemas); fields the server
adds are ignored. Errors: `ApiError` (status, `field`, `reason`), `NotSupported` (the server lacks the
operation), `Unreachable` (no answer), `StreamFailed` (a watch that could not be completed).

`watch` resumes by itself: on a close the gateway calls resumable (1001, 1011, 1012, 1013, or a dropped
connection) it reconnects with `fromSeq` = the last seq it yielded, a bounded number of times with backoff, so
the caller sees every seq once, in order. A reconnect that fails because the API is restarting (refused,
timed out, 502/503/504) is one of those attempts, not the end; only the first connect failing is fatal at
once. It ends after the terminal event (close 1000).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import msgspec
import websockets
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from events.lifecycle import TERMINAL
from services.client.errors import ApiError, NotSupported, StreamFailed, Unreachable
from services.spec.wire import (
    CancelAccepted,
    ErrorBody,
    Order,
    OrderAccepted,
    OrderEvents,
    OrderPage,
    OrderRequest,
    Side,
)

T = TypeVar("T")

API_KEY_VAR = "OEE_API_KEY"
RESUMABLE = frozenset({1001, 1006, 1011, 1012, 1013})
"""Close codes after which the stream can be resumed with `fromSeq` (docs/gateway.md)."""
RETRY_STATUSES = frozenset({502, 503, 504})
"""Handshake answers a reconnect waits out: the API (or a proxy before it) restarting, not ready, or full."""

log = logging.getLogger("services.client")


class Frame(msgspec.Struct, frozen=True, rename="camel"):
    """One frame of an order's stream: the seed's fields plus `seq`, `type` and the event time."""

    order_id: str
    seq: int
    type: str
    status: str
    ts: int
    occurred_at: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class AsyncClient:
    """The API over HTTP and WebSockets (httpx, websockets). Use it as an async context manager."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3000",
        api_key: str | None = None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_resumes: int = 5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_VAR, "").strip()
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout_s, transport=transport
        )
        self.timeout_s = timeout_s
        self.max_resumes = max_resumes

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- orders -------------------------------------------------------------------------------------------
    async def place(
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
        """POST /api/orders/execute: a market order; with `limit_price` a limit order, with `max_price` and
        `min_liquidity` a sniper (`base` is the token to buy; `side` buy); `expires_at` (RFC 3339) for either.
        With an `idempotency_key`, retrying after `Unreachable` is safe."""
        kind: Literal["market", "limit", "sniper"] = (
            "limit" if limit_price is not None else "sniper" if max_price is not None else "market"
        )
        body = OrderRequest(
            base_token=base,
            quote_token=quote,
            amount_in=amount,
            side=side,
            slippage_bps=(slippage_bps if slippage_bps is not None else 100) if kind == "market" else None,
            type=kind,
            limit_price=limit_price,
            max_price=max_price,
            min_liquidity=min_liquidity,
            expires_at=expires_at,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        response = await self._request(
            "POST",
            "/api/orders/execute",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return self._decode(response, OrderAccepted, 201)

    async def get(self, order_id: str, *, min_seq: int | None = None, wait_ms: int | None = None) -> Order:
        """GET /api/orders/{id}; `min_seq` waits (up to `wait_ms`) for the projection to reach that seq."""
        params = _params(minSeq=min_seq, waitMs=wait_ms)
        return self._decode(await self._request("GET", f"/api/orders/{order_id}", params=params), Order)

    async def list(
        self,
        *,
        status: str | None = None,
        side: str | None = None,
        venue: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> OrderPage:
        """GET /api/orders: one page, newest first; pass `page.next_cursor` for the next."""
        params = _params(status=status, side=side, venue=venue, limit=limit, cursor=cursor)
        return self._decode(await self._request("GET", "/api/orders", params=params), OrderPage)

    async def events(self, order_id: str) -> OrderEvents:
        """GET /api/orders/{id}/events: the order's events as the log has them."""
        return self._decode(await self._request("GET", f"/api/orders/{order_id}/events"), OrderEvents)

    async def cancel(self, order_id: str) -> CancelAccepted:
        """DELETE /api/orders/{id}: ask to cancel an order (202: `cancel` is `requested`, or says why there is
        nothing to cancel). The order's own events say how it ended (`OrderCancelled`, or
        `OrderCancelRefused` once submitted). `NotSupported` from a server without cancels."""
        response = await self._request("DELETE", f"/api/orders/{order_id}")
        if response.status_code in (405, 501) or (
            response.status_code == 404 and not _names_the_order(response, order_id)
        ):
            raise NotSupported(response.status_code, "cancelling orders is not supported by this server")
        return self._decode(response, CancelAccepted, 202)

    # -- streams ------------------------------------------------------------------------------------------
    async def watch(
        self, order_id: str, *, from_seq: int = 0, keep_open: bool = False
    ) -> AsyncGenerator[Frame, None]:
        """The order's frames with seq > `from_seq`, in order, each once; ends after the terminal frame.

        The first connect failing raises at once (`Unreachable`, or `ApiError` for a refused handshake).
        Once connected, a dropped stream and each failed reconnect (refused, timed out, 502/503/504: the API
        restarting or full) use one of `max_resumes` attempts, with backoff 0.4 s doubling to 5 s; a frame
        received gives them all back."""
        last = from_seq
        resumes = 0
        connected = False
        while True:
            url = self._ws_url(order_id, last, keep_open)
            failure: Exception | None = None  # a reconnect that failed, raised once attempts run out
            code, reason = 1006, ""
            try:
                async with websockets.connect(
                    url, additional_headers=self._headers, open_timeout=self.timeout_s, max_size=2**20
                ) as ws:
                    connected = True
                    async for raw in ws:
                        frame = msgspec.json.decode(raw, type=Frame)
                        if frame.seq <= last:
                            continue  # already yielded (a resume overlapping what we had)
                        last = frame.seq
                        resumes = 0
                        yield frame
                    code, reason = ws.close_code or 1006, ws.close_reason or ""
            except InvalidStatus as exc:
                if not connected or exc.response.status_code not in RETRY_STATUSES:
                    raise self._refused(exc) from None
                failure = self._refused(exc)
            except ConnectionClosed as exc:
                code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "connection lost")
            except (OSError, TimeoutError, InvalidMessage) as exc:
                # InvalidMessage: the server closed the connection during the handshake (it was stopping).
                unreachable = Unreachable(
                    f"the API at {self.base_url} did not answer ({type(exc).__name__}: {exc or 'no details'})"
                )
                if not connected:
                    raise unreachable from exc
                failure = unreachable
            if failure is None:
                if code == 1000:
                    return
                if code not in RESUMABLE:
                    raise StreamFailed(code, reason)
            if resumes >= self.max_resumes:
                if isinstance(failure, Unreachable):
                    raise Unreachable(
                        f"{failure}; gave up resuming order {order_id} after seq {last} "
                        f"({self.max_resumes} reconnects failed)"
                    ) from failure
                raise failure or StreamFailed(code, reason)
            resumes += 1
            delay = min(0.2 * 2**resumes, 5.0)
            log.warning(
                "watch %s: %s at seq %d; reconnecting in %.1f s (attempt %d of %d)",
                order_id,
                failure if failure is not None else f"closed {code} {reason}".rstrip(),
                last,
                delay,
                resumes,
                self.max_resumes,
            )
            await asyncio.sleep(delay)

    def _ws_url(self, order_id: str, from_seq: int, keep_open: bool) -> str:
        ws = (
            "wss://" + self.base_url[8:]
            if self.base_url.startswith("https://")
            else "ws://" + self.base_url.split("://", 1)[-1]
        )
        query = f"?fromSeq={from_seq}" + ("&keepOpen=1" if keep_open else "")
        return f"{ws}/ws/orders/{order_id}{query}"

    def _refused(self, exc: InvalidStatus) -> ApiError:
        response = exc.response
        try:
            body = msgspec.json.decode(response.body or b"", type=ErrorBody)
            return ApiError(response.status_code, body.error, body.details)
        except msgspec.MsgspecError:
            return ApiError(
                response.status_code, f"the WebSocket handshake was refused ({response.reason_phrase})"
            )

    # -- plumbing -----------------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the API at {self.base_url} did not answer ({type(exc).__name__}: {exc or 'no details'})"
            ) from exc

    def _decode(self, response: httpx.Response, kind: type[T], expected: int = 200) -> T:
        if response.status_code != expected:
            raise _error(response)
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.MsgspecError as exc:
            raise ApiError(response.status_code, f"unexpected answer from the server: {exc}") from None


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _names_the_order(response: httpx.Response, order_id: str) -> bool:
    """A 404 about the order itself (the route exists), rather than about the path (it does not)."""
    return order_id.lower() in response.text.lower() and "not found: /" not in response.text


def _error(response: httpx.Response) -> ApiError:
    retry = response.headers.get("retry-after")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
    except msgspec.MsgspecError:
        text = " ".join(response.text.split())[:200] or response.reason_phrase
        return ApiError(response.status_code, text, retry_after=retry_after)
    return ApiError(response.status_code, body.error, body.details, retry_after)
