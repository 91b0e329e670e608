"""What `oee up` runs: one of each service by default, more routers, APIs, projectors and gateways on asking,
each instance with its own ports, and the counts bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import config
from services.envvars import ConfigError
from services.stack.lineup import (
    MAX_INSTANCES,
    env_for,
    instances_on_disk,
    is_service_instance,
    lineup,
    service_port,
)


def test_one_of_each_by_default_and_no_standalone_gateway() -> None:
    assert [s.name for s in lineup({})] == ["venue", "router", "triggers", "projector", "api"]
    assert all(s.overrides == () for s in lineup({}))


def test_more_instances_take_the_next_ports_and_run_the_same_command() -> None:
    env = {"OEE_ROUTERS": "2", "OEE_APIS": "2", "OEE_GATEWAYS": "2", "PORT": "4000", "GATEWAY_PORT": "4200"}
    services = {s.name: s for s in lineup(env)}
    assert list(services) == [
        "venue", "router", "router-2", "triggers", "projector", "api", "api-2", "gateway", "gateway-2",
    ]  # fmt: skip
    settings = config.load({**env, "OEE_STATE_DIR": "/nonexistent"})
    ports = {name: service_port(settings, s, env) for name, s in services.items()}
    assert ports == {
        "venue": 3100, "router": None, "router-2": None, "triggers": None, "projector": None,
        "api": 4000, "api-2": 4001, "gateway": 4200, "gateway-2": 4201,
    }  # fmt: skip
    assert services["router-2"].kind == "router" and services["api-2"].kind == "api"
    # Metrics ports step by 10: the second router's must not take the projector's (9309).
    assert dict(services["router-2"].overrides) == {"ROUTER_METRICS_PORT": "9318"}
    given = env_for(services["api-2"], {"PORT": "4000", "VENUE_SECRET": "s" * 32})
    assert given == {"PORT": "4001"}, "its own port, and no venue secret"
    assert env_for(services["router-2"], {"VENUE_SECRET": "s" * 32})["VENUE_SECRET"] == "s" * 32


def test_a_metrics_port_turned_off_stays_off_for_every_instance() -> None:
    services = {s.name: s for s in lineup({"OEE_ROUTERS": "3", "ROUTER_METRICS_PORT": "0"})}
    assert services["router-3"].overrides == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OEE_ROUTERS", "0"),
        ("OEE_ROUTERS", str(MAX_INSTANCES + 1)),
        ("OEE_APIS", "two"),
        ("OEE_GATEWAYS", "-1"),
    ],
)
def test_counts_are_bounded_and_a_bad_one_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        lineup({name: value})


def test_the_largest_lineup_is_allowed() -> None:
    most = {v: str(MAX_INSTANCES) for v in ("OEE_ROUTERS", "OEE_APIS", "OEE_PROJECTORS", "OEE_GATEWAYS")}
    assert len(lineup(most)) == 2 + 4 * MAX_INSTANCES  # venue and triggers run once


def test_instances_left_on_disk_are_found_whatever_the_counts_now(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("api-3", "router-2", "kafka-2", "postgres", "supervisor", "venue", "router", "gateway"):
        (run / f"{name}.pid").write_text("1\n")
    assert instances_on_disk(tmp_path) == ["venue", "router", "router-2", "api-3", "gateway"]
    assert not any(is_service_instance(n) for n in ("kafka-2", "router-1", "router-99", "postgres"))


def test_routers_projectors_and_the_trigger_engine_get_a_stable_instance_id_of_their_own(
    tmp_path: Path,
) -> None:
    services = {s.name: s for s in lineup({"OEE_ROUTERS": "2", "OEE_PROJECTORS": "2"})}
    stack = tmp_path / "stack"
    ids = {
        name: env_for(services[name], {}, stack).get(var)
        for name, var in (
            ("router", "ROUTER_INSTANCE_ID"),
            ("router-2", "ROUTER_INSTANCE_ID"),
            ("projector", "PROJECTOR_INSTANCE_ID"),
            ("projector-2", "PROJECTOR_INSTANCE_ID"),
            ("triggers", "TRIGGERS_INSTANCE_ID"),
        )
    }
    assert all(ids.values()) and len(set(ids.values())) == 5, ids
    assert ids["triggers"].startswith("triggers.")
    assert ids["router"].startswith("router.") and ids["projector-2"].startswith("projector-2.")
    # Stable: the instance restarted by the supervisor comes back with the same id ...
    assert env_for(services["router-2"], {}, stack)["ROUTER_INSTANCE_ID"] == ids["router-2"]
    # ... another stack (state dir) sharing the cluster and topic prefix gets others ...
    other = env_for(services["router"], {}, tmp_path / "other")["ROUTER_INSTANCE_ID"]
    assert other != ids["router"]
    # ... and the operator's own value cannot give two instances the same id.
    given = {"ROUTER_INSTANCE_ID": "mine"}
    assert env_for(services["router"], given, stack)["ROUTER_INSTANCE_ID"] == ids["router"]
    # The other services keep dynamic membership; without a stack (a test's env) nothing is added.
    for name in ("venue", "api"):
        given_ids = {"ROUTER_INSTANCE_ID", "PROJECTOR_INSTANCE_ID", "TRIGGERS_INSTANCE_ID"}
        assert not given_ids & set(env_for(services[name], {}, stack))
    assert "ROUTER_INSTANCE_ID" not in env_for(services["router"], {})


def test_an_instance_id_is_what_kafka_accepts_or_a_clear_error() -> None:
    from projections.settings import ProjectorOptions
    from services.router.options import RouterOptions

    assert ProjectorOptions.from_env({}).instance_id is None, "unset: dynamic membership"
    assert RouterOptions.from_env({"ROUTER_INSTANCE_ID": " router-2.ab12 "}).instance_id == "router-2.ab12"
    with pytest.raises(ConfigError, match="PROJECTOR_INSTANCE_ID='a b' must be"):
        ProjectorOptions.from_env({"PROJECTOR_INSTANCE_ID": "a b"})
    with pytest.raises(ConfigError, match="ROUTER_INSTANCE_ID"):
        RouterOptions.from_env({"ROUTER_INSTANCE_ID": "x" * 250})
