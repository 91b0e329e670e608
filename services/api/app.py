"""The API process's composition root: which parts it serves, in which order their lifespans open.

    ingress   POST /api/orders/execute, DELETE /api/orders/{id},    (services.ingress)
              /health, /ready
    query     GET /api/orders, /api/orders/{id}[/events]            (services.query)
    gateway   WS /ws/orders/{id}, WS /ws, GET /gateway/stats        (services.gateway)
    pages     GET /, /app/*                                         (services.web)
    lag       GET /api/lag, /dashboard                              (services.lag.web)
    metrics   GET /metrics                                          (services.metrics)
    specs     GET /openapi.json, /asyncapi.json, /docs               (services.spec)

`services.http.app.build_app` opens what they share (the database pool, the accounts directory, the order
limits) and puts the edge in front of every route, so authentication and limits are applied in one place.
Tests build the same app with fewer parts or a fake publisher.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette

from projections.settings import schema_from_env
from services import ingress, query
from services.accounts.options import AccountsOptions
from services.config import Settings
from services.gateway import app as gateway
from services.gateway.options import GatewayOptions
from services.http.app import build_app
from services.http.parts import Part
from services.ingress.intake import EventPublisher
from services.ingress.options import IngressOptions
from services.lag import web as lag
from services.metrics import gateway as gateway_metrics
from services.metrics import metrics_part
from services.spec import part as specs
from services.web import routes as pages


def parts(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    ingress_options: IngressOptions | None = None,
    schema: str | None = None,
    gateway_options: GatewayOptions | None = None,
) -> list[Part]:
    """Every part of the API, in lifespan order (the lag monitor last: it reads what the others opened)."""
    return [
        ingress.part(settings, publisher=publisher, options=ingress_options, schema=schema),
        query.part(settings, schema=schema),
        gateway.part(settings, gateway_options),
        pages.part(),
        lag.part(settings, deliveries=gateway_metrics.DELIVERY_LAG),  # the gateway above delivers here
        metrics_part(),
        specs.part(),
    ]


def create_app(
    settings: Settings,
    parts_: Sequence[Part] | None = None,
    *,
    accounts: AccountsOptions | None = None,
    schema: str | None = None,
) -> Starlette:
    """The API app: `parts_` (default: all of them) behind the edge; `schema` is the order projection's."""
    schema = schema or schema_from_env()
    chosen = list(parts_) if parts_ is not None else parts(settings, schema=schema)
    return build_app(settings, chosen, accounts=accounts, projection_schema=schema)
