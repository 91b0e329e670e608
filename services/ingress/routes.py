"""The ingress's HTTP handlers. Thin: read and validate, hand the order to `Intake`, answer in JSON."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from services.ingress.idempotency import KeyInFlight, KeyReused
from services.ingress.intake import Accepted
from services.ingress.publisher import BrokerUnavailable, PublishTimeout
from services.ingress.responses import error_response, json_response
from services.ingress.validation import KEY_FIELD, InvalidRequest, Problem, parse_request

log = logging.getLogger("oee.ingress")


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


async def execute(request: Request) -> Response:
    """POST /api/orders/execute: 201 only once the broker acknowledged the order's OrderRequested."""
    state = request.app.state
    options = state.options
    retry = {"Retry-After": str(options.retry_after_s)}
    try:
        body = await read_body(request, options.max_body_bytes)
    except BodyTooLarge:
        problem = Problem("body", f"must be at most {options.max_body_bytes} bytes")
        return error_response(413, "request body too large", [problem])
    keys = request.headers.getlist("idempotency-key")
    if len(keys) > 1:
        return error_response(400, "invalid order request", [Problem(KEY_FIELD, "must be sent once")])
    try:
        order, key = parse_request(body, keys[0] if keys else None, state.tokens)
    except InvalidRequest as exc:
        return error_response(400, exc.summary, exc.problems)
    try:
        accepted = await state.intake.submit(order, key)
    except KeyReused:
        problem = Problem(KEY_FIELD, "was already used with a different request body")
        return error_response(422, "Idempotency-Key reused with a different request", [problem])
    except KeyInFlight:
        problem = Problem(KEY_FIELD, "a request with this key is still being processed")
        return error_response(409, "a request with this Idempotency-Key is in progress", [problem], retry)
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
    """GET /ready: 200 only when the broker and the database both answer."""
    state = request.app.state
    timeout = state.options.ready_timeout_s
    broker, database = await asyncio.gather(
        state.publisher.probe(timeout), database_answers(state.db, timeout)
    )
    checks = {"broker": "ok" if broker else "down", "database": "ok" if database else "down"}
    if broker and database:
        return json_response({"status": "ready", **checks})
    down = " and ".join(name for name, value in checks.items() if value == "down")
    body = {"status": "not ready", **checks, "error": f"{down} unavailable"}
    return json_response(body, 503, {"Retry-After": str(state.options.retry_after_s)})


async def database_answers(pool: asyncpg.Pool, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1
    except Exception as exc:  # refused, timed out, auth, shutting down: all mean "not ready"
        log.debug("database check failed: %r", exc)
        return False
