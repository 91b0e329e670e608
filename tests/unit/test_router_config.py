"""The router's knobs from the environment: documented defaults, and a clear error naming a bad value."""

from __future__ import annotations

import pytest

from services.config import ConfigError, all_env_vars, load_router
from services.router.app import options_from
from services.router.options import RouterOptions


def test_defaults_match_the_documented_table_and_the_core_defaults() -> None:
    knobs = load_router({})
    table = all_env_vars()
    assert knobs.memory_orders == int(table["ROUTER_MEMORY_ORDERS"][0]) == RouterOptions().memory_orders
    assert knobs.landing_deadline_s * 1000 == int(table["ROUTER_LANDING_DEADLINE_MS"][0])
    assert knobs.landing_deadline_s == RouterOptions().landing_deadline_s
    assert knobs.status_grace_s == RouterOptions().status_grace_s == 5.0


def test_values_reach_the_core() -> None:
    env = {"ROUTER_MEMORY_ORDERS": "0", "ROUTER_LANDING_DEADLINE_MS": "1500", "ROUTER_STATUS_GRACE_MS": "250"}
    options = options_from(load_router(env))
    assert (options.memory_orders, options.landing_deadline_s, options.status_grace_s) == (0, 1.5, 0.25)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ROUTER_MEMORY_ORDERS", "-1"), ("ROUTER_LANDING_DEADLINE_MS", "0"), ("ROUTER_STATUS_GRACE_MS", "soon")],
)
def test_a_bad_value_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_router({name: value})
