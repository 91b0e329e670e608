"""The API app as tests build it: the parts a test needs (the ingress, the reads...), behind the same edge
and shared resources as `oee api`, with its lifespan running and an httpx client talking ASGI to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette

from services import ingress
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.http.app import build_app
from services.http.parts import Part
from services.ingress.intake import EventPublisher
from services.ingress.options import IngressOptions
from tests.uvicorn_harness import serve

OFF = AccountsOptions(auth="off", order_rate=0, max_open_orders=0)
"""`AUTH=off` without order limits: what tests not about accounts run under (the environment never leaks in)."""


def api_app(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    options: IngressOptions | None = None,
    accounts: AccountsOptions = OFF,
    more: Sequence[Part] = (),
    ingress_part: bool = True,
    schema: str = "public",
) -> Starlette:
    """The ingress (with `publisher` instead of Kafka when given) and `more` parts behind the edge."""
    parts = (
        [ingress.part(settings, publisher=publisher, options=options or IngressOptions(), schema=schema)]
        if ingress_part
        else []
    )
    return build_app(settings, [*parts, *more], accounts=accounts, projection_schema=schema)


@contextlib.asynccontextmanager
async def served(app: Starlette, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
            yield client


@dataclasses.dataclass
class RunningApp:
    """An app under a real uvicorn (WebSockets need one) on a free loopback port."""

    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Starlette) -> AsyncIterator[RunningApp]:
    """Serve `app` as `oee api` does (sans-I/O websockets, lifespan on) until the block ends."""

    def config(port: int) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )

    served = await serve(config)
    try:
        yield RunningApp(app, served.server, served.task, served.port)
    finally:
        await served.stop()
