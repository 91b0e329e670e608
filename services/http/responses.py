"""JSON answers: one error shape for every failure, `{"error": str, "details": [{"field", "message"}]}`.

Every HTTP service answers through these (the ingress, the read API, lag, the edge's 401/403/429), so a
client parses one shape whatever went wrong and wherever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from services.http.problems import Problem

__all__ = ["EXCEPTION_HANDLERS", "Problem", "error_body", "error_response", "json_response"]

_REASONS = {404: "not found", 405: "method not allowed", 413: "request body too large"}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_body(error: str, details: Iterable[Problem] = ()) -> dict[str, Any]:
    return {"error": error, "details": [{"field": p.field, "message": p.message} for p in details]}


def error_response(
    status: int,
    error: str,
    details: Iterable[Problem] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    return json_response(error_body(error, details), status, headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (and any HTTPException) in our error shape, keeping its headers (Allow)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = _REASONS.get(status) or str(exc.detail).lower()
    if status == 404:
        message = f"not found: {request.url.path}"
    elif status == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(status, message, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """Any other exception: a JSON 500 (Starlette re-raises it afterwards, so the server logs it)."""
    return error_response(500, "internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: http_exception, Exception: server_error}
"""What every app of ours passes as `exception_handlers`."""
