"""The HTTP ingress: POST /api/orders/execute appends an `OrderRequested` to the intake topic and answers 201
only once the broker acknowledged it (acks=all). See `docs/api.md`."""

from services.ingress.app import create_app
from services.ingress.options import INGRESS_ENV_VARS, IngressOptions
from services.ingress.publisher import BrokerUnavailable, Position, Publisher, PublishTimeout
from services.ingress.server import run

__all__ = [
    "INGRESS_ENV_VARS",
    "BrokerUnavailable",
    "IngressOptions",
    "Position",
    "PublishTimeout",
    "Publisher",
    "create_app",
    "run",
]
