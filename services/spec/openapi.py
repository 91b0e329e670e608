"""The OpenAPI 3.1 document of an app, generated from its routes and its access policy. Pure.

Every route of the app must carry its description (`services.spec.operation`): a plain Starlette route is
refused with `Undocumented`, so a route added without one fails the spec tests (and `/openapi.json`). Who may
call each path comes from the app's `Policy` (the same one the edge enforces): public paths need no key,
the others the `apiKey` bearer scheme, operator paths an operator's key (`x-oee-access: operator`).

WebSocket routes appear as the `GET` of their handshake (101); their frames are in the AsyncAPI document.
Schemas come from the msgspec types in `services.spec.wire`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from starlette.routing import BaseRoute

from services.http.parts import Access, Policy
from services.spec.operation import Operation, Param, Reply, SpecMount, SpecRoute, SpecWebSocket
from services.spec.wire import TYPES

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


class Undocumented(ValueError):
    """A route of the app carries no description."""


def document(
    routes: Iterable[BaseRoute], policy: Policy, *, version: str, title: str = "oee"
) -> dict[str, Any]:
    """The OpenAPI document of `routes` (an app's `app.routes`), their access from `policy`."""
    paths: dict[str, dict[str, Any]] = {}
    types: set[type] = set(TYPES)
    missing: list[str] = []
    for r in routes:
        described = _operations(r)
        if described is None:
            missing.append(getattr(r, "path", repr(r)))
            continue
        path, ops = described
        access = policy.access(_concrete(path))
        for method, op in ops.items():
            types.update(_types(op))
            paths.setdefault(_template(path), {})[method.lower()] = _operation(method, path, op, access)
    if missing:
        raise Undocumented(
            f"routes without a description: {', '.join(missing)} "
            "(build them with services.spec.operation.route/websocket/mount)"
        )
    _, components = msgspec.json.schema_components(sorted(types, key=lambda t: t.__name__), ref_template=_REF)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "The order execution engine's HTTP API (docs/api.md). Under `AUTH=keys` every path but the "
                "public ones needs `Authorization: Bearer <API key>`; under `AUTH=off` (loopback only) none "
                "does. WebSocket frames and the Kafka topics are described in /asyncapi.json."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key `oee_<key id>_<secret>` from `oee accounts create NAME`",
                }
            },
        },
    }


def _operations(r: BaseRoute) -> tuple[str, dict[str, Operation]] | None:
    if isinstance(r, SpecRoute):
        return r.path, dict(r.operations)
    if isinstance(r, SpecWebSocket):
        return r.path, {"GET": r.operation}
    if isinstance(r, SpecMount):
        return r.path + "/{file}", {"GET": r.operation}
    return None


def _template(path: str) -> str:
    """Starlette's `{name:converter}` as OpenAPI's `{name}`."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _concrete(path: str) -> str:
    """A path the policy can judge: parameters filled with a stand-in."""
    return _PARAM.sub("x", path)


def _types(op: Operation) -> list[type]:
    found = [op.body] if op.body is not None else []
    found += [r.body for r in op.replies.values() if isinstance(r.body, type)]
    return found


def _operation(method: str, path: str, op: Operation, access: Access) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.id or _operation_id(method, op.summary),
        "summary": op.summary,
    }
    if op.description:
        out["description"] = op.description
    if op.tag:
        out["tags"] = [op.tag]
    params = list(op.params)
    declared = {p.name for p in params if p.where == "path"}
    for name in _PARAM.findall(path):
        if name not in declared:
            params.append(Param(name, "path", f"the {name.replace('_', ' ')}", required=True))
    if params:
        out["parameters"] = [_param(p) for p in params]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    out["responses"] = {str(status): _reply(reply) for status, reply in sorted(op.replies.items())}
    if access is Access.PUBLIC:
        out["security"] = []
    else:
        out["security"] = [{"apiKey": []}]
        if access is Access.OPERATOR:
            out["x-oee-access"] = "operator"
            out["description"] = (out.get("description", "") + "\n\nNeeds an operator's key.").strip()
    return out


def _operation_id(method: str, summary: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", summary)
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words[:8])


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "description": p.description,
        "required": True if p.where == "path" else p.required,
        "schema": p.schema,
    }


def _reply(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.body is not None:
        schema = _ref(reply.body) if isinstance(reply.body, type) else reply.body
        out["content"] = {reply.media_type: {"schema": schema}}
    if reply.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in reply.headers.items()
        }
    return out


def _ref(t: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=t.__name__)}


def paths_of(doc: dict[str, Any]) -> Sequence[tuple[str, str]]:
    """(METHOD, path) of every operation in a document."""
    return sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops)
