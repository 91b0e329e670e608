"""`DELETE /api/orders/{orderId}`: ask the order's owner to cancel it.

The API never changes an order itself: it appends an `OrderCancelRequested` to the intake topic, keyed by the
order id, and answers 202. The router partition that owns the order reads it in one sequence with everything
else about the order (a trigger included) and answers in the log: `OrderCancelled` while nothing was sent to
a venue, `OrderCancelRefused` (reason `submitted`) after, nothing for an order that already ended.

Only the order's account may cancel it; another account's order is answered exactly like an unknown id
(404). Whose an order is comes from the projection; an order placed a moment ago may not be projected yet,
so an id it does not show is looked for again until `INGRESS_CANCEL_WAIT_MS` (2 s) before the 404. DELETE is
idempotent: an order that ended gets 202 with its status and nothing is appended; a repeat of a cancel this
process sent in the last minute gets the same answer without appending it again (`CancelMemory`, bounded).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from events.commands import CancelRequestData, OrderCancelRequested, new_command
from events.envelope import Event
from events.lifecycle import is_terminal
from projections.migrations import quote_ident
from services.http.problems import Problem
from services.http.responses import error_response, json_response
from services.ingress.publisher import BrokerUnavailable, Position, PublishTimeout

log = logging.getLogger("oee.ingress")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_WAIT_MS = 10_000


@dataclass(frozen=True, slots=True)
class Sent:
    request_id: str
    position: Position


class CancelMemory:
    """The cancels this process appended lately, per (account, order): a repeat within `ttl_s` is answered
    from here, so a client hammering DELETE costs no intake record each time. At most `max_entries`,
    the oldest forgotten first (forgetting one only means a repeat is appended, which the owner ignores)."""

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._sent: OrderedDict[tuple[str, str], tuple[float, Sent]] = OrderedDict()

    def get(self, account: str, order_id: str, now: float) -> Sent | None:
        found = self._sent.get((account, order_id))
        if found is None or now - found[0] > self.ttl_s:
            return None
        return found[1]

    def put(self, account: str, order_id: str, sent: Sent, now: float) -> None:
        self._sent[(account, order_id)] = (now, sent)
        self._sent.move_to_end((account, order_id))
        while len(self._sent) > self.max_entries:
            self._sent.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sent)


async def cancel(request: Request) -> Response:
    """DELETE /api/orders/{orderId}[?waitMs=MS]: 202 once the cancel request is on the intake."""
    ctx = request.app.state.ingress
    raw = request.path_params["order_id"]
    order_id = raw.lower()
    problems = []
    if not _UUID.fullmatch(order_id):
        problems.append(Problem("orderId", f"must be a UUID, got {raw[:40]!r}"))
    wait_s = ctx.options.cancel_wait_s
    wait_raw = request.query_params.get("waitMs")
    if wait_raw is not None:
        if not wait_raw.isdigit() or int(wait_raw) > MAX_WAIT_MS:
            problems.append(
                Problem("waitMs", f"must be an integer from 0 to {MAX_WAIT_MS}, got {wait_raw[:20]!r}")
            )
        else:
            wait_s = int(wait_raw) / 1000
    if problems:
        return error_response(400, "invalid cancel request", problems)
    account = request.state.account.name
    retry = {"Retry-After": str(ctx.options.retry_after_s)}
    try:
        status = await _status(ctx.pool, ctx.schema, order_id, account, wait_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("cancel: the projection cannot be read (%r); answered 503", exc)
        return error_response(
            503, "database unavailable: the order cannot be looked up now, retry later", headers=retry
        )
    if status is None:
        return error_response(404, f"order {order_id} not found")
    body: dict[str, Any] = {"orderId": order_id, "status": status}
    if is_terminal(status):
        body["cancel"] = f"nothing to cancel: the order is {status}"
        return json_response(body, 202)
    now = time.monotonic()
    sent = ctx.cancels.get(account, order_id, now)
    if sent is None:
        command = new_command(
            OrderCancelRequested, order_id=order_id, data=CancelRequestData(account_id=account)
        )
        try:
            # The publisher writes any record of the contract the same way: its type, its key, its headers.
            position = await ctx.publisher.publish(cast(Event, command))
        except PublishTimeout:
            return error_response(503, "cancel not acknowledged by the broker in time: retry", headers=retry)
        except BrokerUnavailable:
            return error_response(503, "broker unavailable: cancel not requested, retry later", headers=retry)
        sent = Sent(command.command_id, position)
        ctx.cancels.put(account, order_id, sent, now)
    body.update(
        cancel="requested",
        requestId=sent.request_id,
        position={
            "topic": sent.position.topic,
            "partition": sent.position.partition,
            "offset": sent.position.offset,
        },
    )
    return json_response(body, 202, {"Location": f"/api/orders/{order_id}"})


async def _status(pool: asyncpg.Pool, schema: str, order_id: str, account: str, wait_s: float) -> str | None:
    """The order's projected status when it is this account's; None (after `wait_s`) otherwise."""
    sql = f"SELECT status FROM {quote_ident(schema)}.orders WHERE id = $1 AND account_id = $2"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    pause = 0.05
    while True:
        async with asyncio.timeout(5.0):
            status = await pool.fetchval(sql, order_id, account)
        if status is not None or loop.time() >= deadline:
            return cast(str | None, status)
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 0.25)
