"""compose.yaml, Dockerfile and .dockerignore agree with the code. Pure: reads files, needs no Docker.

There is no Docker engine on the development machines, so `docker compose up` never runs in CI; these
checks catch what would otherwise only show on a user's machine: a misspelled variable, a URL pointing at the
wrong host or port, a subcommand the CLI does not have, a missing health check. Docker Compose's own loader
validates the file in test_compose_cli.py; the image's ownership of what the services write is checked in
test_image_ownership.py, Prometheus and Grafana in test_prometheus_config.py.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest

from services import config
from services.variables import all_env_vars
from tests.compose_file import (
    DOCKERFILE,
    HOST_ACCESS,
    ROOT,
    builders,
    command,
    engine_image,
    engine_services,
    env,
    is_named_volume,
    load,
    required_value,
    volume_mounts,
)

DOCKERIGNORE = ROOT / ".dockerignore"
CONFTEST = ROOT / "tests" / "conftest.py"

# Engine processes that serve HTTP (GET /health) and the port each listens on.
# HTTP service -> (its port, the variables naming its port and bind address)
HTTP_SERVICES = {"api": 3000, "venue": 3100}
PORT_VARS = {"api": ("PORT", "HOST"), "venue": ("VENUE_PORT", "VENUE_HOST")}
# Engine processes without an HTTP server of their own: /metrics on a port of prometheus_client's.
METRICS_SERVICES = {
    "router": "ROUTER_METRICS_PORT",
    "projector": "PROJECTOR_METRICS_PORT",
    "triggers": "TRIGGERS_METRICS_PORT",
}
ENGINE_SERVICES = ("api", "router", "triggers", "venue", "projector")
ONE_SHOTS = ("topics", "migrate")
INFRA = ("redpanda", "postgres")
# Behind a profile: started only when asked for (`docker compose --profile NAME up`).
PROFILED = {"console": "console", "prometheus": "observability", "grafana": "observability"}

# Every variable the engine reads: the services' own, the venue's and the ingress's.
KNOWN_VARS = frozenset(all_env_vars())
# Variables of third-party images, by image repository (without tag).
IMAGE_VARS = {
    "postgres": frozenset({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}),
    "docker.redpanda.com/redpandadata/console": frozenset(
        {"KAFKA_BROKERS", "REDPANDA_ADMINAPI_ENABLED", "REDPANDA_ADMINAPI_URLS"}
    ),
    "docker.redpanda.com/redpandadata/redpanda": frozenset(),
    "prom/prometheus": frozenset(),
    # Grafana maps GF_<SECTION>_<KEY> onto its configuration file.
    "grafana/grafana": frozenset(
        {"GF_USERS_ALLOW_SIGN_UP", "GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES"}
    ),
}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _published(services: Mapping[str, Any], name: str) -> dict[int, str]:
    """container port -> published host port (or range), from the short or long syntax."""
    out: dict[int, str] = {}
    for port in services[name].get("ports") or []:
        if isinstance(port, dict):
            out[int(port["target"])] = str(port.get("published", ""))
            continue
        parts = str(port).split("/")[0].split(":")
        out[int(parts[-1])] = parts[-2] if len(parts) >= 2 else ""
    return out


def _redpanda_flag(services: Mapping[str, Any], flag: str) -> list[str]:
    """The listeners of a `redpanda start` flag, accepting `--flag=a,b` and `--flag a,b`."""
    cmd = command(services, "redpanda")
    for i, arg in enumerate(cmd):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1].split(",")
        if arg == flag and i + 1 < len(cmd):
            return cmd[i + 1].split(",")
    raise AssertionError(f"redpanda's command has no {flag}: {cmd}")


def _listener(listeners: list[str], name: str) -> tuple[str, int]:
    for item in listeners:
        label, _, address = item.rpartition("://")
        if label == name:
            host, _, port = address.rpartition(":")
            return host, int(port)
    raise AssertionError(f"no listener named {name!r} in {listeners}")


def _healthcheck_url(services: Mapping[str, Any], name: str) -> str:
    check = services[name].get("healthcheck")
    assert check and check.get("test") and not check.get("disable"), f"service {name} has no healthcheck"
    test = " ".join(check["test"])
    urls = re.findall(r"https?://[^'\" ]+", test)
    assert urls, f"service {name}'s healthcheck requests no URL: {test}"
    return urls[0]


# --- shape -------------------------------------------------------------------------------------------


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "compose.yaml has a `version:` key, which the Compose spec made obsolete"


def test_every_expected_service_is_there(services: dict[str, Any]) -> None:
    missing = set(INFRA + ONE_SHOTS + ENGINE_SERVICES) | set(PROFILED)
    missing -= set(services)
    assert not missing, f"compose.yaml lacks services {sorted(missing)}"


def test_one_image_built_once(services: dict[str, Any]) -> None:
    """One `build:` (from the repo's Dockerfile) names the image; every other engine service runs that image
    and never looks it up in a registry; each depends on the builder, so `docker compose up SERVICE` and
    `docker compose run SERVICE` build it when it is missing."""
    (builder,) = builders(services)
    build = services[builder]["build"]
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), f"service {builder} builds from {build!r}, not the repo's Dockerfile (.)"
    image = engine_image(services)
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*:[A-Za-z0-9._-]+", image) and not image.endswith(":latest"), (
        f"the engine image {image!r} should be a plain local name with a tag of its own (no registry, no "
        "namespace, not latest), so it cannot be confused with a published image"
    )
    assert services[builder].get("pull_policy") in ("build", "never"), (
        f"the builder {builder} has pull_policy {services[builder].get('pull_policy')!r}: compose would first "
        "try to pull the local image's name from a registry"
    )
    users = set(engine_services(services)) - {builder}
    assert users == set(ONE_SHOTS + ENGINE_SERVICES) - {builder}, (
        f"engine services running {image}: {sorted(users | {builder})}"
    )
    for name in users:
        svc = services[name]
        assert svc.get("image") == image, f"service {name} runs {svc.get('image')!r}, not the engine image"
        assert svc.get("pull_policy") == "never", (
            f"service {name} reuses the local image {image} with pull_policy {svc.get('pull_policy')!r}: "
            "compose would look it up in a registry"
        )
        deps = svc.get("depends_on") or {}
        assert builder in deps, (
            f"service {name} does not depend on {builder}, so `docker compose up {name}` would not build {image}"
        )


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("redpanda", "postgres", "venue", "prometheus", "grafana"):
        named = {s for s, _, _ in volume_mounts(services[name]) if is_named_volume(s)}
        assert named, (
            f"service {name} keeps its data in no named volume (volumes: {services[name].get('volumes')})"
        )
    for name, svc in services.items():
        named = {s for s, _, _ in volume_mounts(svc) if is_named_volume(s)}
        assert named <= declared, f"service {name} mounts volumes {sorted(named - declared)} not declared"


def test_restart_policies(services: dict[str, Any]) -> None:
    for name in (*ENGINE_SERVICES, *INFRA, *PROFILED):
        assert services[name].get("restart") == "unless-stopped", (
            f"service {name} has restart {services[name].get('restart')!r}, expected unless-stopped"
        )
    for name in ONE_SHOTS:
        assert services[name].get("restart", "no") == "no", (
            f"one-shot service {name} has restart {services[name].get('restart')!r}: "
            "service_completed_successfully would never be reached"
        )


def test_profiles(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        want = [PROFILED[name]] if name in PROFILED else None
        assert svc.get("profiles") == want, (
            f"service {name} has profiles {svc.get('profiles')}, expected {want}"
        )


# --- environment -------------------------------------------------------------------------------------


def test_engine_variables_are_ones_the_code_reads(services: dict[str, Any]) -> None:
    known = KNOWN_VARS
    for name in engine_services(services):
        unknown = set(env(services, name)) - known
        assert not unknown, (
            f"service {name} sets {sorted(unknown)}, which services.variables.all_env_vars() "
            "does not name (misspelled?)"
        )


def test_third_party_variables_are_the_images_own(services: dict[str, Any]) -> None:
    engine = set(engine_services(services))
    for name, svc in services.items():
        if name in engine:
            continue
        repo = str(svc["image"]).rsplit(":", 1)[0]
        assert repo in IMAGE_VARS, f"service {name} uses image {repo}, which this test does not know"
        unknown = set(env(services, name)) - IMAGE_VARS[repo]
        assert not unknown, f"service {name} ({repo}) sets {sorted(unknown)}, not variables of that image"


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    engine = set(engine_services(services))
    for name, svc in services.items():
        if name in engine:
            continue
        _, _, tag = str(svc["image"]).rpartition(":")
        assert tag and tag != "latest" and "/" not in tag, (
            f"service {name}'s image {svc['image']} is not pinned"
        )


def test_engine_environment_loads_without_config_error(services: dict[str, Any]) -> None:
    for name in engine_services(services):
        environment = env(services, name)
        try:
            config.load(environment)
        except config.ConfigError as exc:
            raise AssertionError(
                f"service {name}: services.config.load rejects its environment: {exc}"
            ) from exc
        assert environment.get("LOG_FORMAT") == "json", (
            f"service {name} logs as {environment.get('LOG_FORMAT')!r}, not json"
        )
        assert environment.get("KAFKA_BOOTSTRAP_SERVERS"), (
            f"service {name} would fall back to the local stack's Kafka"
        )
        assert environment.get("DATABASE_URL"), f"service {name} would fall back to the embedded PostgreSQL"


def test_database_url_matches_the_postgres_service(services: dict[str, Any]) -> None:
    pg = env(services, "postgres")
    for name in engine_services(services):
        url = urlsplit(env(services, name)["DATABASE_URL"])
        got = {
            "scheme": url.scheme,
            "host": url.hostname,
            "port": url.port or 5432,
            "user": url.username,
            "password": url.password,
            "db": url.path.lstrip("/"),
        }
        want = {
            "scheme": "postgresql",
            "host": "postgres",
            "port": 5432,
            "user": pg["POSTGRES_USER"],
            "password": pg["POSTGRES_PASSWORD"],
            "db": pg["POSTGRES_DB"],
        }
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not diff, (
            f"service {name}: DATABASE_URL disagrees with the postgres service on {diff} (got, want)"
        )


def test_bootstrap_servers_match_the_redpanda_listener(services: dict[str, Any]) -> None:
    bind_host, bind_port = _listener(_redpanda_flag(services, "--kafka-addr"), "internal")
    adv_host, adv_port = _listener(_redpanda_flag(services, "--advertise-kafka-addr"), "internal")
    assert adv_host == "redpanda", (
        f"redpanda advertises its internal listener as {adv_host}, not its service name"
    )
    assert adv_port == bind_port, f"redpanda listens on internal :{bind_port} but advertises :{adv_port}"
    assert bind_host in ("0.0.0.0", "redpanda"), f"redpanda's internal listener binds {bind_host}"
    for name in engine_services(services):
        servers = env(services, name)["KAFKA_BOOTSTRAP_SERVERS"].split(",")
        for server in servers:
            host, _, port = server.strip().rpartition(":")
            assert (host, int(port)) == ("redpanda", bind_port), (
                f"service {name}: KAFKA_BOOTSTRAP_SERVERS has {server}; the broker is redpanda:{bind_port}"
            )
    console = env(services, "console")["KAFKA_BROKERS"]
    assert console == f"redpanda:{bind_port}", (
        f"console's KAFKA_BROKERS={console}, broker is redpanda:{bind_port}"
    )


def test_external_listener_is_published_on_loopback_by_the_host_override(services: dict[str, Any]) -> None:
    """compose.yaml publishes no broker port (the Kafka API takes writes without credentials);
    deploy/host-access.yaml publishes the external listener on the host's loopback, as advertised."""
    _, port = _listener(_redpanda_flag(services, "--kafka-addr"), "external")
    adv_host, adv = _listener(_redpanda_flag(services, "--advertise-kafka-addr"), "external")
    assert adv_host == "localhost", f"redpanda advertises its external listener as {adv_host}"
    assert not _published(services, "redpanda"), "compose.yaml publishes a broker port"
    override = load(HOST_ACCESS)["services"]
    assert _published(override, "redpanda").get(port) == str(adv), (
        f"deploy/host-access.yaml publishes redpanda's external listener :{port} as "
        f"{_published(override, 'redpanda').get(port)!r}, advertised as :{adv}"
    )
    for name in override:
        for item in override[name].get("ports") or []:
            assert str(item).startswith("127.0.0.1:"), (
                f"deploy/host-access.yaml publishes {name}'s {item} widely"
            )


def test_router_reaches_the_venue(services: dict[str, Any]) -> None:
    url = urlsplit(env(services, "router").get("VENUE_URL", ""))
    venue_port = int(env(services, "venue")["VENUE_PORT"])
    assert (url.hostname, url.port) == ("venue", venue_port), (
        f"router's VENUE_URL points at {url.hostname}:{url.port}; the venue listens on venue:{venue_port}"
    )


def test_router_and_venue_share_the_secret_the_venue_needs(services: dict[str, Any]) -> None:
    from services.venue.config import VenueConfig

    venue, router = env(services, "venue"), env(services, "router")
    assert venue.get("VENUE_SECRET") == router.get("VENUE_SECRET") == required_value("VENUE_SECRET"), (
        "VENUE_SECRET must be required from the user (${VENUE_SECRET:?...}) and given to venue and router alike"
    )
    VenueConfig.from_env(venue).check_exposure()  # the venue listens on 0.0.0.0: it needs the secret


def test_http_ports(services: dict[str, Any]) -> None:
    default_port = int(config.ENV_VARS["PORT"][0])
    assert HTTP_SERVICES["api"] == default_port, (
        f"ENV_VARS' default PORT is {default_port}, the api's is 3000"
    )
    for name, port in HTTP_SERVICES.items():
        environment = env(services, name)
        port_var, host_var = PORT_VARS[name]
        assert int(environment.get(port_var, default_port)) == port, (
            f"service {name} has {port_var}={environment.get(port_var)}, not {port}"
        )
        assert environment.get(host_var) == "0.0.0.0", (
            f"service {name} binds {host_var}={environment.get(host_var)!r}; only 0.0.0.0 is reachable from "
            "other containers"
        )
    assert _published(services, "api") == {default_port: str(default_port)}, (
        f"the api is published as {_published(services, 'api')}, not on host port {default_port}"
    )
    assert not _published(services, "venue"), "the venue's port is published: only the router may reach it"


def test_the_published_api_requires_keys(services: dict[str, Any]) -> None:
    """The api binds 0.0.0.0: with AUTH=off it would refuse to start (and should: anyone could trade)."""
    from services.accounts.options import AccountsOptions

    environment = env(services, "api")
    accounts = AccountsOptions.from_env(environment)
    assert accounts.auth == "keys", "compose.yaml's api must run AUTH=keys"
    accounts.check_exposure("HOST", environment["HOST"])  # raises ConfigError if it would refuse to start


# --- commands ----------------------------------------------------------------------------------------


def test_dockerfile_entry_point_is_oee() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and froms[-1].startswith("python:3.11"), f"the Dockerfile's final stage is {froms}"
    assert "uv sync --frozen --no-dev" in text, (
        "the Dockerfile does not install with uv sync --frozen --no-dev"
    )
    entries = re.findall(r"^ENTRYPOINT\s+(.+)$", text, re.M)
    assert entries, "the Dockerfile has no ENTRYPOINT"
    entry = json.loads(entries[-1])
    assert entry[-1] == "oee", f"the Dockerfile's ENTRYPOINT {entry} does not end in the oee console script"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "oee" in scripts, f"pyproject.toml declares no `oee` script (scripts: {scripts})"


def test_every_command_is_a_cli_subcommand(services: dict[str, Any]) -> None:
    from services.cli import SUBCOMMANDS  # the lead's CLI: a tuple of subcommand names

    for name in engine_services(services):
        assert "entrypoint" not in services[name], f"service {name} overrides the image's `oee` entry point"
        cmd = command(services, name)
        assert cmd, f"service {name} has no command, so it would only print oee --help"
        assert cmd[0] in SUBCOMMANDS, (
            f"service {name} runs `oee {' '.join(cmd)}`; the CLI knows {SUBCOMMANDS}"
        )
    for name in ONE_SHOTS + ENGINE_SERVICES:
        assert command(services, name)[0] == name, f"service {name} runs `oee {command(services, name)[0]}`"
    assert command(services, "topics") == ["topics", "create"], (
        "the topics service must run `oee topics create`"
    )


# --- health and ordering -----------------------------------------------------------------------------


def test_health_checks(services: dict[str, Any]) -> None:
    for name in ("redpanda", "postgres", "prometheus", *ENGINE_SERVICES):
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"service {name} has no healthcheck"
    assert "rpk cluster health" in " ".join(services["redpanda"]["healthcheck"]["test"]), (
        "redpanda's healthcheck does not ask rpk cluster health"
    )
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"]), (
        "postgres' healthcheck does not run pg_isready"
    )
    expected = {name: (port, "/health") for name, port in HTTP_SERVICES.items()}
    for name, var in METRICS_SERVICES.items():
        environment = env(services, name)
        from services.metrics import port_from_env

        port = port_from_env(environment, var)
        assert port, f"service {name} has {var}=0: it serves no /metrics to check (or scrape)"
        assert environment.get("HOST") == "0.0.0.0", (
            f"service {name} serves /metrics on HOST={environment.get('HOST')!r}; Prometheus needs 0.0.0.0"
        )
        expected[name] = (port, "/metrics")
    for name, (port, path) in expected.items():
        url = urlsplit(_healthcheck_url(services, name))
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, path), (
            f"service {name}'s healthcheck asks {url.geturl()}, expected GET 127.0.0.1:{port}{path}"
        )
        test = " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["healthcheck"]["test"][:3] == ["CMD", "python", "-c"], (
            f"service {name}'s healthcheck is not python -c (the image has no curl or wget): {test}"
        )
        ast.parse(services[name]["healthcheck"]["test"][3])  # the snippet is valid Python


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            assert dep in services, f"service {name} depends on {dep}, which does not exist"
            assert dep not in PROFILED or PROFILED[dep] in (services[name].get("profiles") or []), (
                f"service {name} depends on {dep}, which runs only under profile {PROFILED[dep]}"
            )
            condition = (spec or {}).get("condition", "service_started")
            assert condition in VALID_CONDITIONS, f"service {name} waits for {dep} with unknown {condition!r}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"service {name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOTS, (
                    f"service {name} waits for {dep} to complete, but {dep} keeps running"
                )


def test_engine_waits_for_its_prerequisites(services: dict[str, Any]) -> None:
    required = {
        "redpanda": "service_healthy",
        "postgres": "service_healthy",
        "topics": "service_completed_successfully",
        "migrate": "service_completed_successfully",
    }
    for name in ENGINE_SERVICES:
        deps = services[name].get("depends_on") or {}
        got = {dep: (deps.get(dep) or {}).get("condition") for dep in required}
        wrong = {dep: got[dep] for dep in required if got[dep] != required[dep]}
        assert not wrong, f"service {name} depends on {wrong}; expected {required}"
    assert services["router"]["depends_on"]["venue"]["condition"] == "service_healthy", (
        "the router starts before the venue answers"
    )
    assert services["topics"]["depends_on"]["redpanda"]["condition"] == "service_healthy", (
        "topics runs too early"
    )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy", (
        "migrate runs too early"
    )
    assert services["console"]["depends_on"]["redpanda"]["condition"] == "service_healthy", (
        "console starts early"
    )


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    missing = {".venv", ".git", ".stack", ".env"} - lines
    assert not missing, f".dockerignore does not exclude {sorted(missing)}"


# --- tests run against the broker compose runs -------------------------------------------------------


def _conftest_constant(name: str) -> str:
    for node in ast.parse(CONFTEST.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise AssertionError(f"tests/conftest.py defines no {name}")


def test_testcontainers_run_the_images_compose_runs(services: dict[str, Any]) -> None:
    """With a Docker engine, the test fixtures start Redpanda and PostgreSQL through testcontainers: the
    same images, so the suite tests the broker users deploy (testcontainers' own default is years older)."""
    assert _conftest_constant("REDPANDA_IMAGE") == services["redpanda"]["image"], (
        "tests/conftest.py's REDPANDA_IMAGE differs from compose.yaml's redpanda image"
    )
    assert _conftest_constant("POSTGRES_IMAGE") == services["postgres"]["image"], (
        "tests/conftest.py's POSTGRES_IMAGE differs from compose.yaml's postgres image"
    )
    text = CONFTEST.read_text()
    assert "RedpandaContainer(REDPANDA_IMAGE)" in text, "conftest starts Redpanda without REDPANDA_IMAGE"
    assert "PostgresContainer(POSTGRES_IMAGE" in text, "conftest starts PostgreSQL without POSTGRES_IMAGE"
