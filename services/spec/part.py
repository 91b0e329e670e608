"""The specs as a part of the API: `/openapi.json`, `/asyncapi.json`, the `/docs` page and its assets.

Public, like `/health` (the policy says so below): they describe what the API accepts and answers, which any
client is entitled to know, and hold no data. Both documents are generated on the first request from the
app's own routes and policy (the OpenAPI one) and the event classes (the AsyncAPI one), then kept.

The docs page is Swagger UI, its files served from the `swagger-ui-py` package (decision 0021), never a
CDN: the page works offline and behind a strict network policy. Its Authorize button takes an API key.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from services.http.parts import Access, Part
from services.http.responses import json_response
from services.spec import asyncapi, openapi
from services.spec.operation import Operation, Param, Reply, error, mount, route

_JSON = {"type": "object"}
OPENAPI = Operation(
    "The OpenAPI document",
    "This API as OpenAPI 3.1, generated from its routes.",
    tag="specs",
    replies={200: Reply("OpenAPI 3.1", _JSON)},
)
ASYNCAPI = Operation(
    "The AsyncAPI document",
    "The WebSocket frames and Kafka topics as AsyncAPI 3.0, generated from the event classes.",
    tag="specs",
    replies={200: Reply("AsyncAPI 3.0", _JSON)},
)
DOCS = Operation(
    "The API's docs page",
    "Swagger UI over /openapi.json.",
    tag="specs",
    replies={200: Reply("the page", {"type": "string"}, media_type="text/html")},
)
ASSETS = Operation(
    "The docs page's files",
    "Swagger UI's files, from the swagger-ui-py package.",
    tag="specs",
    params=[
        Param("file", "path", "a Swagger UI file (swagger-ui.css, swagger-ui-bundle.js...)", required=True)
    ],
    replies={200: Reply("the file", {"type": "string"}, media_type="*/*"), 404: error("no such file")},
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>oee API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                 persistAuthorization: false});
  </script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    """Where the swagger-ui-py package keeps Swagger UI's files (found without importing the package,
    whose import would load its framework adapters)."""
    found = importlib.util.find_spec("swagger_ui")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (it is a dependency: uv sync)")
    return Path(next(iter(found.submodule_search_locations))) / "static"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("order-execution-engine")
    except PackageNotFoundError:
        return "0.0.0"


async def openapi_json(request: Request) -> Response:
    app = request.app
    doc: dict[str, Any] | None = getattr(app.state, "openapi", None)
    if doc is None:
        doc = openapi.document(app.routes, app.state.policy, version=package_version())
        app.state.openapi = doc
    return json_response(doc, headers={"Cache-Control": "no-cache"})


async def asyncapi_json(request: Request) -> Response:
    app = request.app
    doc: dict[str, Any] | None = getattr(app.state, "asyncapi", None)
    if doc is None:
        settings = app.state.settings
        # Neither the request's Host (the first caller would choose it for everyone) nor the broker's
        # address (internal): the servers are variables with local defaults.
        doc = asyncapi.document(
            version=package_version(), prefix=settings.topic_prefix, partitions=settings.partitions
        )
        app.state.asyncapi = doc
    return json_response(doc, headers={"Cache-Control": "no-cache"})


async def docs(request: Request) -> Response:
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})


def part() -> Part:
    """The specs: public (no key), like /health."""
    routes = [
        route("/openapi.json", openapi_json, get=OPENAPI),
        route("/asyncapi.json", asyncapi_json, get=ASYNCAPI),
        route("/docs", docs, get=DOCS),
        mount("/docs/assets", StaticFiles(directory=swagger_ui_dir()), ASSETS, name="docs-assets"),
    ]
    access = {
        "/openapi.json": Access.PUBLIC,
        "/asyncapi.json": Access.PUBLIC,
        "/docs": Access.PUBLIC,
        "/docs/assets/*": Access.PUBLIC,
    }
    return Part("specs", routes, access=access)
