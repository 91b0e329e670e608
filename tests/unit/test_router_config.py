"""The router's knobs from the environment: documented defaults, and a clear error naming a bad value."""

from __future__ import annotations

import pytest

from services.envvars import ConfigError
from services.router.options import ROUTER_ENV_VARS, RouterOptions
from services.variables import all_env_vars


def test_the_documented_table_is_derived_from_the_core_defaults() -> None:
    table = all_env_vars()
    assert {name: table[name] for name in ROUTER_ENV_VARS} == ROUTER_ENV_VARS
    assert table["ROUTER_MEMORY_ORDERS"][0] == "200000"
    assert table["ROUTER_LANDING_DEADLINE_MS"][0] == "60000"
    assert table["ROUTER_BACKOFF_MS"][0] == "1000,2000"
    assert table["ROUTER_STATUS_GRACE_MS"][0] == "5000"
    assert RouterOptions.from_env({}) == RouterOptions()


def test_values_reach_the_core() -> None:
    env = {
        "ROUTER_MEMORY_ORDERS": "0",
        "ROUTER_LANDING_DEADLINE_MS": "1500",
        "ROUTER_STATUS_GRACE_MS": "250",
        "ROUTER_BACKOFF_MS": "100, 300",
        "ROUTER_BATCH_MAX": "7",
    }
    options = RouterOptions.from_env(env)
    assert (options.memory_orders, options.landing_deadline_s, options.status_grace_s) == (0, 1.5, 0.25)
    assert (options.backoff, options.batch_max) == ((0.1, 0.3), 7)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ROUTER_MEMORY_ORDERS", "-1"),
        ("ROUTER_LANDING_DEADLINE_MS", "0"),
        ("ROUTER_STATUS_GRACE_MS", "soon"),
        ("ROUTER_BACKOFF_MS", "1000,-5"),
        ("ROUTER_BACKOFF_MS", "1s"),
    ],
)
def test_a_bad_value_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RouterOptions.from_env({name: value})
