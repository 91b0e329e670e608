"""GET /api/lag and GET /dashboard on an app whose monitor is a stand-in holding reports."""

from __future__ import annotations

import dataclasses

import httpx
from starlette.applications import Starlette

from services.lag import web
from tests.unit.test_lag_views import report


class Reports:
    def __init__(self, *seqs: int) -> None:
        self.history = [dataclasses.replace(report(), seq=s) for s in seqs]

    @property
    def latest(self):  # type: ignore[no-untyped-def]
        return self.history[-1] if self.history else None

    def report(self, seq: int):  # type: ignore[no-untyped-def]
        return next((r for r in self.history if r.seq == seq), None)


async def get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path)


async def test_api_lag_serves_the_latest_or_a_named_sample() -> None:
    app = Starlette(routes=web.routes())
    assert (await get(app, "/api/lag")).status_code == 503  # no monitor (LAG_INTERVAL_MS=0)
    app.state.lag = Reports()
    assert (await get(app, "/api/lag")).json()["error"] == "no lag sample yet"
    app.state.lag = Reports(4, 5, 6)
    latest = await get(app, "/api/lag")
    assert latest.status_code == 200 and latest.json()["seq"] == 6
    assert latest.headers["cache-control"] == "no-store"
    assert (await get(app, "/api/lag?seq=4")).json()["seq"] == 4
    assert (await get(app, "/api/lag?seq=3")).status_code == 404
    assert (await get(app, "/api/lag?seq=x")).status_code == 400


async def test_the_dashboard_page_polls_the_json() -> None:
    page = await get(Starlette(routes=web.routes()), "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'fetch("/api/lag"' in page.text and 'id="groups"' in page.text
