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
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from services.http.parts import Access, Part

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR", "page_routes", "part"]


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Mount("/app", app=StaticFiles(directory=STATIC_DIR, html=True), name="app"),
    ]


def part() -> Part:
    access = {"/": Access.PUBLIC, "/app": Access.PUBLIC, "/app/*": Access.PUBLIC}
    return Part("pages", page_routes(), access=access)
