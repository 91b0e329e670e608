"""The ingress's HTTP handlers. Thin: read and validate, hand the order to `Intake`, answer in JSON.

They find what they need on `app.state.ingress` (an `IngressContext`, opened by the ingress part's lifespan)
and the caller's account on `request.state.account` (set by the edge before any route runs).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from services.http.problems import Problem
from services.http.responses import error_response, json_response
from services.ingress.cancel import CancelMemory
from services.ingress.idempotency import KeyInFlight, KeyReused
from services.ingress.intake import Accepted, EventPublisher, Intake
from services.ingress.keystore import StoreUnavailable
from services.ingress.options import IngressOptions
from services.ingress.publisher import BrokerUnavailable, PublishTimeout
from services.ingress.readiness import Checks, Readiness
from services.ingress.validation import KEY_FIELD, InvalidRequest, parse_request

log = logging.getLogger("oee.ingress")


@dataclass
class IngressContext:
    options: IngressOptions
    tokens: tuple[str, ...]
    publisher: EventPublisher
    intake: Intake
    readiness: Readiness
    pool: asyncpg.Pool | None = None  # the API's database pool: whose an order is (cancels)
    schema: str = "public"  # the order projection's schema
    cancels: CancelMemory = field(default_factory=CancelMemory)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes by Content-Length or by what actually arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def is_json(content_type: str | None) -> bool:
    """`application/json`, parameters (charset) allowed. Anything else could come from a cross-site form
    (`text/plain` needs no CORS preflight), so it is refused before the body is read."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


async def execute(request: Request) -> Response:
    """POST /api/orders/execute: 201 only once the broker acknowledged the order's OrderRequested."""
    ctx: IngressContext = request.app.state.ingress
    options = ctx.options
    retry = {"Retry-After": str(options.retry_after_s)}
    if not is_json(request.headers.get("content-type")):
        problem = Problem("Content-Type", "must be application/json")
        return error_response(415, "unsupported media type: send the order as application/json", [problem])
    try:
        body = await read_body(request, options.max_body_bytes)
    except BodyTooLarge:
        problem = Problem("body", f"must be at most {options.max_body_bytes} bytes")
        return error_response(413, "request body too large", [problem])
    keys = request.headers.getlist("idempotency-key")
    if len(keys) > 1:
        return error_response(400, "invalid order request", [Problem(KEY_FIELD, "must be sent once")])
    try:
        now = datetime.now(UTC)
        order, key = parse_request(
            body, keys[0] if keys else None, ctx.tokens, now=now, max_resting_s=options.max_resting_s
        )
    except InvalidRequest as exc:
        return error_response(400, exc.summary, exc.problems)
    account = request.state.account
    try:
        accepted = await ctx.intake.submit(order, key, account.name)
    except KeyReused:
        problem = Problem(KEY_FIELD, "was already used with a different request body")
        return error_response(422, "Idempotency-Key reused with a different request", [problem])
    except KeyInFlight:
        problem = Problem(KEY_FIELD, "a request with this key is still being processed")
        return error_response(409, "a request with this Idempotency-Key is in progress", [problem], retry)
    except StoreUnavailable as exc:
        request.state.reject_reason = "keys_unavailable"
        log.warning("idempotency keys unavailable, answered 503: %r", exc.__cause__)
        error = "the Idempotency-Key cannot be checked now (database unavailable): retry later"
        return error_response(503, error, headers=retry)
    except PublishTimeout as exc:
        request.state.reject_reason = "outcome_unknown"  # metrics: 503 alone does not say which
        log.warning("order outcome unknown, answered 503: %s", exc, extra={"order_id": exc.order_id})
        error = "order not acknowledged by the broker in time (outcome unknown): retry with the same key"
        return error_response(503, error, headers=retry)
    except BrokerUnavailable as exc:
        log.warning("broker unavailable, answered 503: %s", exc)
        return error_response(503, "broker unavailable: order not accepted, retry later", headers=retry)
    return _accepted(accepted)


def _accepted(accepted: Accepted) -> Response:
    order_id, position = accepted.order_id, accepted.position
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "order accepted",
            extra={"order_id": order_id, "partition": position.partition, "offset": position.offset},
        )
    body = {
        "orderId": order_id,
        "status": "pending",
        "wsUrl": f"/ws/orders/{order_id}",
        "position": {"topic": position.topic, "partition": position.partition, "offset": position.offset},
    }
    headers = {"Location": f"/api/orders/{order_id}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(body, 201, headers)


async def health(request: Request) -> Response:
    """GET /health: the process is alive."""
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    """GET /ready: 200 only when the broker and the database both answer (checked at most once a second)."""
    ctx: IngressContext = request.app.state.ingress
    checks = await ctx.readiness.check()
    named = {"broker": "ok" if checks.broker else "down", "database": "ok" if checks.database else "down"}
    if checks.broker and checks.database:
        return json_response({"status": "ready", **named})
    down = " and ".join(name for name, value in named.items() if value == "down")
    body = {"status": "not ready", **named, "error": f"{down} unavailable"}
    return json_response(body, 503, {"Retry-After": str(ctx.options.retry_after_s)})


def probe(publisher: EventPublisher, pool: asyncpg.Pool, timeout_s: float) -> Readiness:
    """The readiness of this process: the broker (a metadata request) and the database (`SELECT 1`)."""

    async def both() -> Checks:
        broker, database = await asyncio.gather(publisher.probe(timeout_s), database_answers(pool, timeout_s))
        return Checks(broker, database)

    return Readiness(both)


async def database_answers(pool: asyncpg.Pool, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1
    except Exception as exc:  # refused, timed out, auth, shutting down: all mean "not ready"
        log.debug("database check failed: %r", exc)
        return False
