"""What a route says about itself for the OpenAPI document, declared where the route is declared.

A part builds its routes with `route(...)`, `websocket(...)` and `mount(...)` instead of Starlette's classes:
the same routes, carrying an `Operation` per method. The methods a route serves are the ones it documents,
so a method cannot be served without its description; a plain Starlette route in an app has no description,
and `services.spec.openapi.document` refuses it (`Undocumented`), which the spec tests turn into a failure.

Bodies and answers name msgspec types (`services.spec.wire`), from which the schemas are generated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter: its JSON Schema and what it means."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    schema: JsonSchema = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """One answer: what it means, its body (a msgspec type, a raw schema, or none) and its headers."""

    description: str
    body: type | JsonSchema | None = None
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Operation:
    """One method of one path, as OpenAPI describes it."""

    summary: str
    description: str = ""
    tag: str = ""
    params: Sequence[Param] = ()
    body: type | None = None  # the JSON request body's msgspec type
    body_required: bool = True
    replies: Mapping[int, Reply] = field(default_factory=dict)
    id: str = ""  # operationId; derived from the summary when empty


Methods = Mapping[str, Operation]  # "GET" -> its operation


class SpecRoute(Route):
    """A Starlette `Route` that carries its operations; it serves exactly the methods it documents."""

    def __init__(self, path: str, endpoint: Callable[..., Any], operations: Methods, **kwargs: Any) -> None:
        if not operations:
            raise ValueError(f"{path}: a route needs at least one documented method")
        super().__init__(path, endpoint, methods=[m.upper() for m in operations], **kwargs)
        self.operations = {m.upper(): op for m, op in operations.items()}


class SpecWebSocket(WebSocketRoute):
    """A WebSocket route with the operation describing its handshake (the frames are AsyncAPI's)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], operation: Operation, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.operation = operation


class SpecMount(Mount):
    """A mounted app (static files) described as one `GET {path}/{file}` operation."""

    def __init__(self, path: str, app: ASGIApp, operation: Operation, **kwargs: Any) -> None:
        super().__init__(path, app=app, **kwargs)
        self.operation = operation


def route(
    path: str,
    endpoint: Callable[..., Any],
    *,
    get: Operation | None = None,
    post: Operation | None = None,
    delete: Operation | None = None,
    name: str | None = None,
) -> SpecRoute:
    """`Route(path, endpoint)` serving the given methods, each with its description."""
    ops = {m: op for m, op in (("GET", get), ("POST", post), ("DELETE", delete)) if op is not None}
    return SpecRoute(path, endpoint, ops, name=name)


def websocket(path: str, endpoint: Callable[..., Any], operation: Operation) -> SpecWebSocket:
    return SpecWebSocket(path, endpoint, operation)


def mount(path: str, app: ASGIApp, operation: Operation, name: str | None = None) -> SpecMount:
    return SpecMount(path, app, operation, name=name)


# -- shared pieces ------------------------------------------------------------------------------------------
def error(description: str, **headers: str) -> Reply:
    """An answer in the API's one error shape (`{"error", "details"}`)."""
    from services.spec.wire import ErrorBody

    return Reply(description, ErrorBody, headers=headers)


RETRY_AFTER = "seconds to wait before retrying"
UNAUTHORIZED = error(
    "no valid API key (`AUTH=keys`): missing, malformed, unknown or revoked", **{"WWW-Authenticate": "Bearer"}
)
FORBIDDEN = error("the key's account is disabled, or the route needs an operator key")
KEY_UNCHECKED = error("the key cannot be checked now (database unavailable)", **{"Retry-After": RETRY_AFTER})

ORDER_ID = Param("order_id", "path", "the order id (a UUID, as `orderId` in the 201)", {"type": "string",
                 "format": "uuid"}, required=True)  # fmt: skip
