"""Routes serving the order page: `/` and `/app/` (index.html) and its assets under `/app/`.

The page talks to the API it is served by: `POST /api/orders/execute`, then the `wsUrl` of the answer on
the same host, so it works wherever the API runs with the gateway mounted. The page is a shell without
data, open to anyone: under `AUTH=keys` the user pastes an API key into it, and the page sends it with each
request (`Authorization: Bearer`) and each WebSocket (the `bearer.<key>` subprotocol).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from services.http.parts import Access, Part
from services.spec.operation import Operation, Param, Reply, error, mount, route

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR", "page_routes", "part"]


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


_HTML = {200: Reply("the page (a shell without data)", {"type": "string"}, media_type="text/html")}
INDEX = Operation(
    "The order page", "Place an order and watch its lifecycle live.", tag="pages", replies=_HTML
)
ASSETS = Operation(
    "The order page's files",
    tag="pages",
    params=[Param("file", "path", "a file of the page (`index.html`, scripts, styles)", required=True)],
    replies={200: Reply("the file", {"type": "string"}, media_type="*/*"), 404: error("no such file")},
)


def page_routes() -> list[BaseRoute]:
    return [
        route("/", index, get=INDEX),
        mount("/app", StaticFiles(directory=STATIC_DIR, html=True), ASSETS, name="app"),
    ]


def part() -> Part:
    access = {"/": Access.PUBLIC, "/app": Access.PUBLIC, "/app/*": Access.PUBLIC}
    return Part("pages", page_routes(), access=access)
