"""Every environment variable the engine reads, gathered from the table of each component that owns some.

Only the CLI's tooling and the tests import this (compose.yaml, the docs and the README are checked against
it): no service needs the whole list, and a component never imports another's table, so gathering them here,
at the top, keeps the import graph free of loops (`tests/unit/test_import_graph.py`).
"""

from __future__ import annotations

from projections.settings import PROJECTION_ENV_VARS
from services.accounts.options import ACCOUNTS_ENV_VARS
from services.config import ENV_VARS
from services.gateway.options import GATEWAY_ENV_VARS
from services.ingress.options import INGRESS_ENV_VARS
from services.lag.config import LAG_ENV_VARS
from services.metrics import METRICS_ENV_VARS
from services.query.options import QUERY_ENV_VARS
from services.router.options import ROUTER_ENV_VARS
from services.serving.limits import HTTP_ENV_VARS
from services.stack.lineup import LINEUP_ENV_VARS
from services.stack.supervisor_options import SUPERVISOR_ENV_VARS
from services.triggers.options import TRIGGERS_ENV_VARS
from services.venue.config import VENUE_ENV_VARS

__all__ = ["all_env_vars"]


def all_env_vars() -> dict[str, tuple[str, str]]:
    """Every variable any part of the engine reads: name -> (default as written, meaning)."""
    return {
        **ENV_VARS,
        **ROUTER_ENV_VARS,
        **INGRESS_ENV_VARS,
        **ACCOUNTS_ENV_VARS,
        **VENUE_ENV_VARS,
        **PROJECTION_ENV_VARS,
        **GATEWAY_ENV_VARS,
        **LAG_ENV_VARS,
        **METRICS_ENV_VARS,
        **SUPERVISOR_ENV_VARS,
        **HTTP_ENV_VARS,
        **QUERY_ENV_VARS,
        **TRIGGERS_ENV_VARS,
        **LINEUP_ENV_VARS,
    }
