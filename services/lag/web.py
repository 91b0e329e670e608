"""The lag monitor inside the API process: `GET /api/lag`, `GET /dashboard`, and its lifespan.

`part(settings)` is what the API's bootstrap mounts: the routes, who may call them, and the lifespan, which
starts one `LagMonitor` (sampling in the background every `LAG_INTERVAL_MS`) on the app's database
pool and registers its Prometheus exporter; the routes only read the reports it keeps, so a request never
waits on the broker.

    GET /api/lag          the latest report (JSON; docs/lag.md describes it); 503 before the first sample
    GET /api/lag?seq=N    report N if still kept (the last minute), else 404: lets views compare one sample
    GET /dashboard        the live page (static HTML polling /api/lag)

Under `AUTH=keys` the report needs an operator key; the page is a shell without data (a browser cannot send
a key when it navigates): it asks for the key and sends it with every poll of /api/lag.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

from prometheus_client import REGISTRY, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from services.config import Settings
from services.http.lifespans import Lifespan
from services.http.parts import Access, Part
from services.http.responses import error_response, json_response
from services.lag.config import LagOptions
from services.lag.exporter import LagExporter
from services.lag.monitor import LagMonitor
from services.spec.operation import FORBIDDEN, UNAUTHORIZED, Operation, Param, Reply, error, route
from services.spec.wire import LAG_REPORT

log = logging.getLogger("oee.lag")


_NO_STORE = {"Cache-Control": "no-store"}


def _error(status: int, error: str) -> Response:
    return error_response(status, error, headers=_NO_STORE)


async def lag(request: Request) -> Response:
    monitor: LagMonitor | None = getattr(request.app.state, "lag", None)
    if monitor is None:
        return _error(503, "the lag monitor is off (LAG_INTERVAL_MS=0)")
    raw = request.query_params.get("seq")
    if raw is not None:
        if not raw.isdigit():
            return _error(400, "seq must be a sample number")
        report = monitor.report(int(raw))
        if report is None:
            return _error(404, f"sample {raw} is not kept any more (or not taken yet)")
    else:
        report = monitor.latest
        if report is None:
            return _error(503, "no lag sample yet")
    return json_response(report.to_json(), headers=_NO_STORE)


_PAGE: bytes | None = None


async def dashboard(request: Request) -> Response:
    global _PAGE
    if _PAGE is None:  # read on first use, not at import
        _PAGE = resources.files("services.lag").joinpath("dashboard.html").read_bytes()
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})


LAG = Operation(
    "Consumer lag report",
    "The latest sample of the lag monitor (groups, partitions, stage lags, orders in flight, stuck orders); "
    "`?seq=N` a sample of the last minute. The same report as `oee lag --json` and the dashboard.",
    tag="operations",
    params=[Param("seq", "query", "a sample number (kept for about a minute)", {"type": "integer", "minimum": 0})],
    replies={
        200: Reply("the report", LAG_REPORT),
        400: error("seq is not a sample number"),
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: error("that sample is not kept any more"),
        503: error("the monitor is off, or has no sample yet"),
    },
)  # fmt: skip
DASHBOARD = Operation(
    "Lag dashboard",
    "A live page polling /api/lag (it asks for an operator's key under AUTH=keys).",
    tag="pages",
    replies={200: Reply("the page (a shell without data)", {"type": "string"}, media_type="text/html")},
)


def routes() -> list[BaseRoute]:
    return [route("/api/lag", lag, get=LAG), route("/dashboard", dashboard, get=DASHBOARD)]


def lifespan(
    settings: Settings, options: LagOptions | None = None, deliveries: Histogram | None = None
) -> Lifespan:
    """Open the monitor on the app's database pool (`app.state.db`, opened by the ingress lifespan);
    `deliveries` is the in-process gateway's delivery histogram (the `log_to_gateway` stage)."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        opts = options or LagOptions.from_env()
        if opts.interval_s <= 0:
            yield
            return
        pool = getattr(app.state, "db", None)
        monitor = LagMonitor(settings, opts, pool, projection_schema(), deliveries=deliveries)
        exporter = LagExporter(lambda: monitor.latest)
        await monitor.start()
        REGISTRY.register(exporter)
        app.state.lag = monitor
        try:
            yield
        finally:
            app.state.lag = None
            REGISTRY.unregister(exporter)
            await monitor.stop()

    return run


def part(settings: Settings, options: LagOptions | None = None, deliveries: Histogram | None = None) -> Part:
    """What `oee api` mounts: the lag routes (the report for operators, the page's shell for anyone) and the
    monitor's lifespan (on the app's database pool, with the API's gateway `deliveries` when it has one)."""
    access = {"/api/lag": Access.OPERATOR, "/dashboard": Access.PUBLIC}
    return Part("lag", routes(), lifespan(settings, options, deliveries), access=access)


def projection_schema() -> str:
    """The schema the projector writes (`PROJECTION_SCHEMA`), so positions are read where they are."""
    try:
        from projections.settings import schema_from_env
    except ImportError:  # a build without the projector
        return "public"
    return schema_from_env()
