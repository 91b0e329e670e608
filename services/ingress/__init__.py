"""The HTTP ingress: POST /api/orders/execute appends an `OrderRequested` to the intake topic and answers 201
only once the broker acknowledged it (acks=all). See `docs/api.md`. `part()` is what the API mounts."""

from services.ingress.options import INGRESS_ENV_VARS, IngressOptions
from services.ingress.part import part
from services.ingress.publisher import BrokerUnavailable, Position, Publisher, PublishTimeout

__all__ = [
    "INGRESS_ENV_VARS",
    "BrokerUnavailable",
    "IngressOptions",
    "Position",
    "PublishTimeout",
    "Publisher",
    "part",
]
