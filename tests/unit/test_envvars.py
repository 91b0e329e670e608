"""Settings declared once: the variable table derives from the options' defaults, and reading an empty
environment gives those very defaults; a bad value is refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from projections.settings import PROJECTION_ENV_VARS, ProjectorOptions
from services.accounts.options import ACCOUNTS_ENV_VARS, AccountsOptions
from services.envvars import (
    ConfigError,
    drawn,
    flag,
    integer,
    millis,
    millis_list,
    millis_range,
    number,
    parse_int,
    parsed,
    read,
    table,
    text,
)
from services.gateway.options import GATEWAY_ENV_VARS, GatewayOptions
from services.ingress.options import INGRESS_ENV_VARS, IngressOptions
from services.lag.config import LAG_ENV_VARS, LagOptions
from services.query.options import QUERY_ENV_VARS, QueryOptions
from services.router.options import ROUTER_ENV_VARS, RouterOptions
from services.serving.limits import HTTP_ENV_VARS, HttpLimits
from services.stack.supervisor_options import SUPERVISOR_ENV_VARS, SupervisorOptions
from services.triggers.options import TRIGGERS_ENV_VARS, TriggerOptions
from services.variables import all_env_vars
from services.venue.config import VENUE_ENV_VARS, VenueConfig

DECLARED = [
    (GatewayOptions, GATEWAY_ENV_VARS),
    (IngressOptions, INGRESS_ENV_VARS),
    (QueryOptions, QUERY_ENV_VARS),
    (HttpLimits, HTTP_ENV_VARS),
    (RouterOptions, ROUTER_ENV_VARS),
    (LagOptions, LAG_ENV_VARS),
    (TriggerOptions, TRIGGERS_ENV_VARS),
    (ProjectorOptions, PROJECTION_ENV_VARS),
    (AccountsOptions, {k: v for k, v in ACCOUNTS_ENV_VARS.items() if k != "OEE_API_KEY"}),  # the clients' key
    (VenueConfig, VENUE_ENV_VARS),
    (SupervisorOptions, SUPERVISOR_ENV_VARS),
]


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str = text("S_NAME", "x", "a name")
    count: int = integer("S_COUNT", 12, "a count", 1, 100)
    ratio: float = number("S_RATIO", 0.5, "a ratio", 0, 1)
    wait_s: float = millis("S_WAIT_MS", 1.5, "a wait", 0, 10_000)
    on: bool = flag("S_ON", True, "a switch")
    delays: tuple[float, ...] = millis_list("S_DELAYS_MS", (0.25, 2.0), "delays")
    spread_s: tuple[float, float] = millis_range("S_SPREAD_MS", (0.5, 2.0), "a spread", 60_000)
    token: str = parsed("S_TOKEN", "", "", "a secret", str, hidden=True)
    lucky: int = drawn("S_LUCKY", "drawn when unset", lambda raw: parse_int("S_LUCKY", raw, 0, 9), lambda: 4)
    internal: int = 7  # not a setting


def test_the_table_is_the_defaults_as_written_in_the_environment() -> None:
    assert table(Sample) == {
        "S_NAME": ("x", "a name"),
        "S_COUNT": ("12", "a count"),
        "S_RATIO": ("0.5", "a ratio"),
        "S_WAIT_MS": ("1500", "a wait"),
        "S_ON": ("1", "a switch"),
        "S_DELAYS_MS": ("250,2000", "delays"),
        "S_SPREAD_MS": ("500-2000", "a spread"),
        "S_TOKEN": ("", "a secret"),
        "S_LUCKY": ("", "drawn when unset"),
    }
    assert read(Sample, {}) == Sample()
    got = read(Sample, {"S_COUNT": "3", "S_WAIT_MS": "20", "S_ON": "0", "S_DELAYS_MS": "1,2"}, internal=1)
    assert (got.count, got.wait_s, got.on, got.delays, got.internal) == (3, 0.02, False, (0.001, 0.002), 1)
    got = read(Sample, {"S_SPREAD_MS": "250", "S_TOKEN": "sesame-open-now", "S_LUCKY": "9"})
    assert (got.spread_s, got.token, got.lucky) == ((0.25, 0.25), "sesame-open-now", 9)
    assert "sesame" not in repr(got), "a hidden setting stays out of the repr (and so out of log lines)"


def test_a_drawn_setting_is_made_afresh_when_unset() -> None:
    draws = iter(range(100))

    @dataclasses.dataclass(frozen=True)
    class Drawn:
        n: int = drawn("S_N", "a draw", int, lambda: next(draws))

    assert [read(Drawn, {}).n, Drawn().n, read(Drawn, {"S_N": "42"}).n, Drawn().n] == [0, 1, 42, 2]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"S_COUNT": "0"}, "S_COUNT=0 is outside 1..100"),
        ({"S_COUNT": "many"}, "S_COUNT='many' is not an integer"),
        ({"S_RATIO": "nan"}, "S_RATIO=nan is outside 0..1"),
        ({"S_ON": "yes"}, "S_ON='yes' is not an integer"),
        ({"S_DELAYS_MS": "1,-1"}, "S_DELAYS_MS='1,-1' must not be negative"),
        ({"S_SPREAD_MS": "fast"}, "S_SPREAD_MS='fast' must be milliseconds 'a' or a range 'a-b'"),
        ({"S_SPREAD_MS": "1-2-3"}, "S_SPREAD_MS='1-2-3' must be milliseconds 'a' or a range 'a-b'"),
        ({"S_SPREAD_MS": "20-10"}, "S_SPREAD_MS='20-10' must be within 0..60000 with low <= high"),
        ({"S_SPREAD_MS": "60001"}, "S_SPREAD_MS='60001' must be within 0..60000 with low <= high"),
        ({"S_WAIT_MS": "10001"}, "S_WAIT_MS=10001 is outside 0..10000"),
        ({"S_LUCKY": "10"}, "S_LUCKY=10 is outside 0..9"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_reason(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read(Sample, env)
    assert str(raised.value) == says


@pytest.mark.parametrize(("options", "variables"), DECLARED, ids=[c.__name__ for c, _ in DECLARED])
def test_each_component_reads_its_declared_defaults_from_an_empty_environment(
    options: type, variables: dict[str, tuple[str, str]]
) -> None:
    assert variables == table(options) and variables.items() <= all_env_vars().items()
    from_env, expected = options.from_env({}), options()  # type: ignore[attr-defined]
    if options is TriggerOptions:  # unset instance id: the host name
        from_env = dataclasses.replace(from_env, instance_id="")
    if options is VenueConfig:  # unset seed: a random one, drawn afresh for each instance
        from_env = dataclasses.replace(from_env, seed=expected.seed)
    if options is LagOptions:  # unset routing threshold: the router's budget, filled in
        assert from_env.stuck_routing_s == LagOptions().stuck_s["routing"] == 14.0
        from_env = dataclasses.replace(from_env, stuck_routing_s=None)
    assert from_env == expected
