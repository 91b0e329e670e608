"""Routes serving the order page: `/` and `/app/` (index.html) and its assets under `/app/`.

The page talks to the API it is served by: `POST /api/orders/execute`, then the `wsUrl` of the answer on
the same host, so it works wherever the API runs with the gateway mounted.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR", "page_routes"]


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Mount("/app", app=StaticFiles(directory=STATIC_DIR, html=True), name="app"),
    ]
