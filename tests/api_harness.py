"""The API app as tests build it: the parts a test needs (the ingress, the reads...), behind the same edge
and shared resources as `oee api`, with its lifespan running and an httpx client talking ASGI to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import httpx
from starlette.applications import Starlette

from services import ingress
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.http.app import build_app
from services.http.parts import Part
from services.ingress.intake import EventPublisher
from services.ingress.options import IngressOptions

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
        [ingress.part(settings, publisher=publisher, options=options or IngressOptions())]
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
