"""The bare ceiling for the ingress: the same POST route, JSON parse and validation, answering 201 with no
broker behind it.

It reuses the ingress's own pieces (`read_body`, `parse_request`, `order_id_for`, `json_response`) and runs
under uvicorn with the settings of `services/api/server.py` (`services.serving`: uvloop, httptools with
the HTTP edge's bounds, no access log, no server header), so the ratio ingress / bare isolates what
publishing to Kafka costs. `--plain` serves with uvicorn's own protocols instead, to price the bounds.

    python -m bench.bare_app --port 3999 [--plain]
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.config import load
from services.http.responses import error_response, json_response
from services.ingress.intake import order_id_for
from services.ingress.options import IngressOptions
from services.ingress.routes import BodyTooLarge, read_body
from services.ingress.validation import KEY_FIELD, InvalidRequest, Problem, parse_request
from services.serving.limits import HttpLimits
from services.serving.server import uvicorn_config


async def execute(request: Request) -> Response:
    """POST /api/orders/execute without the broker: validate, name the order, answer 201."""
    limit: int = request.app.state.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return error_response(413, "request body too large", [Problem("body", f"at most {limit} bytes")])
    keys = request.headers.getlist("idempotency-key")
    if len(keys) > 1:
        return error_response(400, "invalid order request", [Problem(KEY_FIELD, "must be sent once")])
    try:
        _, key = parse_request(body, keys[0] if keys else None, request.app.state.tokens)
    except InvalidRequest as exc:
        return error_response(400, exc.summary, exc.problems)
    order_id = order_id_for(key)
    reply = {"orderId": order_id, "status": "pending", "wsUrl": f"/ws/orders/{order_id}"}
    return json_response(reply, 201, {"Location": f"/api/orders/{order_id}"})


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def create_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/api/orders/execute", execute, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", health, methods=["GET"]),
        ]
    )
    app.state.tokens = load().tokens
    app.state.max_body_bytes = IngressOptions.from_env().max_body_bytes
    return app


def server(port: int, host: str = "127.0.0.1", *, plain: bool = False) -> uvicorn.Server:
    """The uvicorn settings of `services.api.server.server`, around the bare app."""
    config = uvicorn_config(
        create_app(),
        host=host,
        port=port,
        log_level="warning",
        limits=HttpLimits.from_env(),
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=10,
    )
    if plain:  # uvicorn's own protocols, without the edge's bounds
        config.http, config.ws = "httptools", "websockets-sansio"
    return uvicorn.Server(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--plain", action="store_true", help="uvicorn's own protocols (no edge bounds)")
    args = parser.parse_args()
    server(args.port, args.host, plain=args.plain).run()


if __name__ == "__main__":
    main()
