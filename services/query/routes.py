"""The read API's handlers: validate, read the projection (waiting for a position when asked), answer JSON.

- `GET /api/orders/{orderId}`: the order's current state and how fresh its partition of the projection is.
- `GET /api/orders/{orderId}/events`: the order's events in seq order, as the log has them.
- `GET /api/orders`: filtered, newest first, keyset-paginated.

`minSeq` / `minPosition` (+ `waitMs`) make a read wait for the projection to reach what the client was told;
if it does not in time the answer is 503 with `Retry-After` and how far it is, never older data. An order that
has ended (a terminal status) below `minSeq` answers at once as it ended (200): no event can follow, so
there is nothing to wait or retry for. A waiting
read costs a query when it starts and one when it ends, none in between (`services.query.waits` checks
every waiting read at once); when `QUERY_MAX_WAITERS` wait already it is refused at once (503).

Every read is the caller's account's (`request.state.account`, set by the edge): another account's order is
answered exactly as an unknown one (404, absent from lists), never 403, so ids do not leak.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from events.lifecycle import is_terminal
from projections.db import is_unavailable
from services.http.responses import error_response, json_response
from services.query import views
from services.query.params import InvalidQuery, Wait, encode_cursor, list_query, one_order, params_of
from services.query.reads import Reads
from services.query.waits import Target, Waiter, WaitersFull, seq_reached

log = logging.getLogger("oee.query")


@dataclass
class QueryContext:
    """What the handlers need, opened by the query lifespan and kept on `app.state.query`."""

    pool: asyncpg.Pool
    reads: Reads
    waiter: Waiter
    retry_after_s: int = 1
    acquire_timeout_s: float = 2.0  # a pool that has no connection free in time answers 503


@dataclass
class _Seen:
    """What a read found: the order row (or None) and, for minPosition, that partition's position row."""

    row: asyncpg.Record | None
    position: asyncpg.Record | None
    ok: bool


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """A database that does not answer is a 503 (retry later), not a 500."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            if not is_unavailable(exc, None):
                raise
            log.warning("database unavailable for %s: %r", request.url.path, exc)
            ctx: QueryContext = request.app.state.query
            return error_response(503, "database unavailable, retry later", headers=_retry(ctx))

    return run


def _retry(ctx: QueryContext) -> dict[str, str]:
    return {"Retry-After": str(ctx.retry_after_s)}


def _reject_execute(request: Request) -> None:
    # `/api/orders/execute` is the ingress's POST path: a GET there is the wrong method, not a bad id.
    if request.path_params.get("order_id") == "execute":
        raise HTTPException(405, headers={"Allow": "POST"})


async def _read(ctx: QueryContext, order_id: str, wait: Wait, account: str) -> _Seen:
    async with ctx.pool.acquire(timeout=ctx.acquire_timeout_s) as conn:
        row = await ctx.reads.order(conn, order_id, account)
        position = None
        ok = seq_reached(
            None if row is None else row["last_seq"],
            row is not None and is_terminal(row["status"]),
            wait.min_seq,
        )
        if wait.min_position is not None:
            partition, offset = wait.min_position
            position = await ctx.reads.position(conn, partition)
            ok = ok and position is not None and position["next_offset"] > offset
    return _Seen(row, position, ok)


async def _read_waiting(ctx: QueryContext, order_id: str, wait: Wait, account: str) -> tuple[_Seen, bool]:
    """The order as soon as the projection satisfies `wait` (or at once without one); (seen, in time).
    Raises `WaitersFull` when as many reads wait as may."""
    if not wait.wanted:
        return await _read(ctx, order_id, wait, account), True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.wait_ms / 1000
    since = ctx.waiter.notifications  # taken before the look: a commit notified during it is checked for
    seen = await _read(ctx, order_id, wait, account)
    if seen.ok:
        return seen, True
    target = Target(order_id, wait.min_seq, wait.min_position)
    if not await ctx.waiter.wait(target, deadline - loop.time(), since):
        return await _read(ctx, order_id, wait, account), False  # how far it got, for the 503
    seen = await _read(ctx, order_id, wait, account)
    if not seen.ok:
        # The projection got there, yet this read does not see it (an order it may not see, or tables
        # swapped by a rebuild meanwhile): answer as for an order that never arrived, at the same time.
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    return seen, seen.ok


def _not_caught_up(ctx: QueryContext, order_id: str, wait: Wait, seen: _Seen) -> Response:
    wanted = []
    if wait.min_seq is not None:
        wanted.append(f"minSeq={wait.min_seq}")
    if wait.min_position is not None:
        wanted.append(f"minPosition={wait.min_position[0]}:{wait.min_position[1]}")
    body: dict[str, Any] = {
        "error": f"the projection has not reached {' and '.join(wanted)} within {wait.wait_ms} ms; retry",
        "details": [],
        "orderId": order_id,
        "lastSeq": None if seen.row is None else seen.row["last_seq"],
    }
    if seen.position is not None:
        body["projection"] = views.freshness(seen.position)
    elif seen.row is not None:
        body["projection"] = views.freshness(seen.row, seen.row["last_partition"])
    return json_response(body, 503, _retry(ctx))


async def _projected_order(request: Request) -> tuple[QueryContext, str, Any] | Response:
    """The order of the path, once the projection has caught up with what the query waits for; or the
    answer to give instead (400 bad parameters, 503 not caught up in time, 404 unknown order)."""
    ctx: QueryContext = request.app.state.query
    try:
        order_id, wait = one_order(
            request.path_params["order_id"], params_of(request.query_params.multi_items())
        )
    except InvalidQuery as exc:
        return error_response(400, exc.summary, exc.problems)
    try:
        seen, in_time = await _read_waiting(ctx, order_id, wait, request.state.account.name)
    except WaitersFull as exc:
        return error_response(503, f"{exc}: retry later, or without waitMs", headers=_retry(ctx))
    if not in_time:
        return _not_caught_up(ctx, order_id, wait, seen)
    if seen.row is None:
        return error_response(404, f"order {order_id} not found")
    return ctx, order_id, seen.row


@_guarded
async def get_order(request: Request) -> Response:
    """GET /api/orders/{orderId}[?minSeq=N][&minPosition=P:O][&waitMs=MS]"""
    _reject_execute(request)
    found = await _projected_order(request)
    if isinstance(found, Response):
        return found
    _, _, row = found
    body = views.order(row)
    body["projection"] = views.freshness(row, row["last_partition"])
    return json_response(body)


@_guarded
async def get_order_events(request: Request) -> Response:
    """GET /api/orders/{orderId}/events[?minSeq=N][&minPosition=P:O][&waitMs=MS]"""
    found = await _projected_order(request)
    if isinstance(found, Response):
        return found
    ctx, order_id, _ = found
    async with ctx.pool.acquire(timeout=ctx.acquire_timeout_s) as conn:
        rows = await ctx.reads.events(conn, order_id)
    return json_response({"orderId": order_id, "events": [views.event(r) for r in rows]})


@_guarded
async def list_orders(request: Request) -> Response:
    """GET /api/orders[?status=][&type=][&side=][&venue=][&from=][&to=][&limit=][&cursor=]"""
    ctx: QueryContext = request.app.state.query
    try:
        query = list_query(params_of(request.query_params.multi_items()))
    except InvalidQuery as exc:
        return error_response(400, exc.summary, exc.problems)
    async with ctx.pool.acquire(timeout=ctx.acquire_timeout_s) as conn:
        rows = await ctx.reads.page(conn, query, request.state.account.name)
        summary = await ctx.reads.summary(conn)
    page = rows[: query.limit]
    more = len(rows) > query.limit
    next_cursor = encode_cursor(query, page[-1]["created_at"], str(page[-1]["id"])) if more else None
    return json_response(
        {
            "orders": [views.order(r) for r in page],
            "nextCursor": next_cursor,
            "projection": _summary(summary),
        }
    )


def _summary(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None or not row["partitions"]:
        return None
    return {
        "partitions": row["partitions"],
        "lagEvents": row["lag"],
        "oldestAppliedAt": views.iso(row["oldest_applied"]),
        "oldestCheckedAt": views.iso(row["oldest_check"]),
    }
