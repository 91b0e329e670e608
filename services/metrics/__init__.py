"""Prometheus metrics: the helpers every service uses to expose them, and the names in one place.

Each service's metrics live in a module of its own (`ingress`, `router`, `venue`, `projector`, `gateway`,
`triggers`;
the lag gauges in `services.lag.exporter`), registered in prometheus_client's default registry when that
module is imported, so a process exposes only the metrics of what it runs. Every name starts with `oee_`.
`/metrics` is a route on the HTTP services (`metrics_route`); the router and the trigger engine, which have
no HTTP server, serve it on `ROUTER_METRICS_PORT` / `TRIGGERS_METRICS_PORT` (`serve`). `docs/lag.md` lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import start_http_server as _start_http_server
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.http.parts import Access, Part

log = logging.getLogger("oee.metrics")

METRICS_ENV_VARS: dict[str, tuple[str, str]] = {
    "ROUTER_METRICS_PORT": ("9308", "port of the router's /metrics (Prometheus); 0: not served"),
    "PROJECTOR_METRICS_PORT": ("9309", "port of the projector's /metrics (Prometheus); 0: not served"),
    "TRIGGERS_METRICS_PORT": ("9311", "port of the trigger engine's /metrics (Prometheus); 0: not served"),
}

# Request latencies (ingress): 1 ms .. 10 s.
FAST_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Order lifecycle durations: 5 ms .. 5 min (executions take 2-3 s, retries and reconciliations longer).
SLOW_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(registry)


def metrics_route(path: str = "/metrics", registry: CollectorRegistry = REGISTRY) -> Route:
    """A Starlette route serving `registry` (collecting is in-memory and fast: no thread needed)."""
    # `*_created` series double what is exported and no dashboard here uses them.
    disable_created_metrics()

    async def metrics(request: Request) -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    from services.spec.operation import FORBIDDEN, UNAUTHORIZED, Operation, Reply, route

    described = Operation(
        "Prometheus metrics",
        "Every `oee_` metric of this process, in the Prometheus text format (docs/lag.md lists them).",
        tag="operations",
        replies={
            200: Reply("the exposition", {"type": "string"}, media_type="text/plain"),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
        },
    )
    return route(path, metrics, get=described, name="metrics")


def metrics_part() -> Part:
    """`/metrics` as a part of an HTTP app: operators only under `AUTH=keys` (Prometheus sends the key as
    `authorization: {credentials: <key>}` in its scrape config)."""
    return Part("metrics", [metrics_route()], access={"/metrics": Access.OPERATOR})


def serve(port: int, host: str = "127.0.0.1", what: str = "metrics") -> bool:
    """Serve /metrics on `port` from a daemon thread (prometheus_client's server), for processes without an
    HTTP server. Port 0 means off. A port already in use is logged and skipped: metrics never stop a
    service from running."""
    if port == 0:
        return False
    disable_created_metrics()
    try:
        _start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("%s not served on %s:%d: %s", what, host, port, exc)
        return False
    log.info("%s served on http://%s:%d/metrics", what, host, port)
    return True


def port_from_env(env: Mapping[str, str] | None, name: str) -> int:
    """A metrics port from the environment (`METRICS_ENV_VARS` default), validated."""
    import os

    from services.envvars import ConfigError

    source = os.environ if env is None else env
    raw = source.get(name, "") or METRICS_ENV_VARS[name][0]
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={port} is outside 0..65535")
    return port


def sample_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every sample name `registry` can expose (`x_total`, `x_bucket`, ... included), for checks of
    dashboards and alerts against the code."""
    names: set[str] = set()
    for metric in registry.collect():
        names.add(metric.name)
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(metric.type, ())
        names.update(metric.name + s for s in suffixes)
        names.update(s.name for s in metric.samples)
    return names
