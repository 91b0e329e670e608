"""compose.yaml, Dockerfile and .dockerignore agree with the code. Pure: reads files, needs no Docker.

There is no Docker engine on the development machines, so `docker compose up` never runs in CI; these
checks catch what would otherwise only show on a user's machine: a misspelled variable, a URL pointing at the
wrong host or port, a subcommand the CLI does not have, a missing health check.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services import config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Engine processes that serve HTTP (GET /health) and the port each listens on.
# HTTP service -> (its port, the variables naming its port and bind address)
HTTP_SERVICES = {"api": 3000, "venue": 3100}
PORT_VARS = {"api": ("PORT", "HOST"), "venue": ("VENUE_PORT", "VENUE_HOST")}
ENGINE_SERVICES = ("api", "router", "triggers", "venue", "projector")
ONE_SHOTS = ("topics", "migrate")
INFRA = ("redpanda", "console", "postgres")

# Every variable the engine reads: the services' own, the venue's and the ingress's.
KNOWN_VARS = frozenset(config.all_env_vars())
# Variables of third-party images, by image repository (without tag).
IMAGE_VARS = {
    "postgres": frozenset({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}),
    "docker.redpanda.com/redpandadata/console": frozenset(
        {"KAFKA_BROKERS", "REDPANDA_ADMINAPI_ENABLED", "REDPANDA_ADMINAPI_URLS"}
    ),
    "docker.redpanda.com/redpandadata/redpanda": frozenset(),
}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def required_value(name: str) -> str:
    """What the checks use for a ${NAME:?message} the user must set (compose refuses to start without it)."""
    return f"set-by-the-user-{name}"


def _interpolate(value: str, where: str) -> str:
    """Resolve compose's ${NAME:-default} to its default, as `docker compose up` does with NAME unset, and a
    required ${NAME:?message} to a stand-in value."""

    def sub(m: re.Match[str]) -> str:
        if m.group("op") is None:
            raise AssertionError(f"{where}: ${{{m.group('name')}}} has no default; write ${{NAME:-default}}")
        if m.group("op").endswith("?"):
            assert m.group("default"), f"{where}: ${{{m.group('name')}:?}} needs a message saying what to set"
            return required_value(m.group("name"))
        return m.group("default")

    return _INTERPOLATION.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict), "compose.yaml is not a mapping"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(services: Mapping[str, Any], name: str) -> dict[str, str]:
    raw = services[name].get("environment") or {}
    if isinstance(raw, list):  # the KEY=VALUE list form
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: _interpolate(str(v), f"services.{name}.environment.{k}") for k, v in raw.items()}


def _command(services: Mapping[str, Any], name: str) -> list[str]:
    cmd = services[name].get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _built(services: Mapping[str, Any]) -> list[str]:
    return [name for name, svc in services.items() if "build" in svc]


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
    cmd = _command(services, "redpanda")
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


# --- shape -------------------------------------------------------------------------------------------


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "compose.yaml has a `version:` key, which the Compose spec made obsolete"


def test_every_expected_service_is_there(services: dict[str, Any]) -> None:
    missing = set(INFRA + ONE_SHOTS + ENGINE_SERVICES) - set(services)
    assert not missing, f"compose.yaml lacks services {sorted(missing)}"


def test_engine_services_build_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name in ONE_SHOTS + ENGINE_SERVICES:
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context in (".", "./"), f"service {name} builds from {build!r}, not the repo's Dockerfile (.)"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("redpanda", "postgres"):
        mounts = services[name].get("volumes") or []
        sources = {str(m).split(":")[0] if isinstance(m, str) else m.get("source") for m in mounts}
        named = {s for s in sources if s and not s.startswith((".", "/", "~"))}
        assert named, f"service {name} keeps its data in no named volume (volumes: {mounts})"
        assert named <= declared, f"service {name} mounts volumes {sorted(named - declared)} not declared"


def test_restart_policies(services: dict[str, Any]) -> None:
    for name in ENGINE_SERVICES:
        assert services[name].get("restart") == "unless-stopped", (
            f"service {name} has restart {services[name].get('restart')!r}, expected unless-stopped"
        )
    for name in ONE_SHOTS:
        assert services[name].get("restart", "no") == "no", (
            f"one-shot service {name} has restart {services[name].get('restart')!r}: "
            "service_completed_successfully would never be reached"
        )


# --- environment -------------------------------------------------------------------------------------


def test_engine_variables_are_ones_the_code_reads(services: dict[str, Any]) -> None:
    known = KNOWN_VARS
    for name in _built(services):
        unknown = set(_env(services, name)) - known
        assert not unknown, (
            f"service {name} sets {sorted(unknown)}, which services.config.all_env_vars() "
            "does not name (misspelled?)"
        )


def test_third_party_variables_are_the_images_own(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            continue
        repo = str(svc["image"]).rsplit(":", 1)[0]
        assert repo in IMAGE_VARS, f"service {name} uses image {repo}, which this test does not know"
        unknown = set(_env(services, name)) - IMAGE_VARS[repo]
        assert not unknown, f"service {name} ({repo}) sets {sorted(unknown)}, not variables of that image"


def test_engine_environment_loads_without_config_error(services: dict[str, Any]) -> None:
    for name in _built(services):
        env = _env(services, name)
        try:
            config.load(env)
        except config.ConfigError as exc:
            raise AssertionError(
                f"service {name}: services.config.load rejects its environment: {exc}"
            ) from exc
        assert env.get("LOG_FORMAT") == "json", f"service {name} logs as {env.get('LOG_FORMAT')!r}, not json"
        assert env.get("KAFKA_BOOTSTRAP_SERVERS"), (
            f"service {name} would fall back to the local stack's Kafka"
        )
        assert env.get("DATABASE_URL"), f"service {name} would fall back to the embedded PostgreSQL"


def test_database_url_matches_the_postgres_service(services: dict[str, Any]) -> None:
    pg = _env(services, "postgres")
    for name in _built(services):
        url = urlsplit(_env(services, name)["DATABASE_URL"])
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
    for name in _built(services):
        servers = _env(services, name)["KAFKA_BOOTSTRAP_SERVERS"].split(",")
        for server in servers:
            host, _, port = server.strip().rpartition(":")
            assert (host, int(port)) == ("redpanda", bind_port), (
                f"service {name}: KAFKA_BOOTSTRAP_SERVERS has {server}; the broker is redpanda:{bind_port}"
            )
    console = _env(services, "console")["KAFKA_BROKERS"]
    assert console == f"redpanda:{bind_port}", (
        f"console's KAFKA_BROKERS={console}, broker is redpanda:{bind_port}"
    )


def test_external_listener_is_published(services: dict[str, Any]) -> None:
    _, port = _listener(_redpanda_flag(services, "--kafka-addr"), "external")
    _, adv = _listener(_redpanda_flag(services, "--advertise-kafka-addr"), "external")
    published = _published(services, "redpanda")
    assert published.get(port) == str(adv), (
        f"redpanda's external listener :{port} (advertised :{adv}) is published as {published.get(port)!r}"
    )


def test_router_reaches_the_venue(services: dict[str, Any]) -> None:
    url = urlsplit(_env(services, "router").get("VENUE_URL", ""))
    venue_port = int(_env(services, "venue")["VENUE_PORT"])
    assert (url.hostname, url.port) == ("venue", venue_port), (
        f"router's VENUE_URL points at {url.hostname}:{url.port}; the venue listens on venue:{venue_port}"
    )


def test_router_and_venue_share_the_secret_the_venue_needs(services: dict[str, Any]) -> None:
    from services.venue.config import VenueConfig

    venue, router = _env(services, "venue"), _env(services, "router")
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
        env = _env(services, name)
        port_var, host_var = PORT_VARS[name]
        assert int(env.get(port_var, default_port)) == port, (
            f"service {name} has {port_var}={env.get(port_var)}, not {port}"
        )
        assert env.get(host_var) == "0.0.0.0", (
            f"service {name} binds {host_var}={env.get(host_var)!r}; only 0.0.0.0 is reachable from other containers"
        )
        published = _published(services, name)
        assert port in published, f"service {name}'s port {port} is not published (ports: {published})"
    api = _published(services, "api")[default_port]
    assert api == str(default_port), f"the api is published on host port {api}, not {default_port}"


def test_the_published_api_requires_keys(services: dict[str, Any]) -> None:
    """The api binds 0.0.0.0: with AUTH=off it would refuse to start (and should: anyone could trade)."""
    from services.accounts.options import AccountsOptions

    env = _env(services, "api")
    accounts = AccountsOptions.from_env(env)
    assert accounts.auth == "keys", "compose.yaml's api must run AUTH=keys"
    accounts.check_exposure("HOST", env["HOST"])  # raises ConfigError if it would refuse to start


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

    for name in _built(services):
        assert "entrypoint" not in services[name], f"service {name} overrides the image's `oee` entry point"
        cmd = _command(services, name)
        assert cmd, f"service {name} has no command, so it would only print oee --help"
        assert cmd[0] in SUBCOMMANDS, (
            f"service {name} runs `oee {' '.join(cmd)}`; the CLI knows {SUBCOMMANDS}"
        )
    for name in ONE_SHOTS + ENGINE_SERVICES:
        assert _command(services, name)[0] == name, f"service {name} runs `oee {_command(services, name)[0]}`"
    assert _command(services, "topics") == ["topics", "create"], (
        "the topics service must run `oee topics create`"
    )


# --- health and ordering -----------------------------------------------------------------------------


def test_health_checks(services: dict[str, Any]) -> None:
    for name in ("redpanda", "postgres", *HTTP_SERVICES):
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"service {name} has no healthcheck"
    assert "rpk cluster health" in " ".join(services["redpanda"]["healthcheck"]["test"]), (
        "redpanda's healthcheck does not ask rpk cluster health"
    )
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"]), (
        "postgres' healthcheck does not run pg_isready"
    )
    for name, port in HTTP_SERVICES.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        urls = re.findall(r"https?://[^'\" ]+", test)
        assert urls, f"service {name}'s healthcheck requests no URL: {test}"
        url = urlsplit(urls[0])
        assert (url.port, url.path) == (port, "/health"), (
            f"service {name}'s healthcheck asks {urls[0]}, expected GET :{port}/health"
        )
        assert "curl" not in test and "wget" not in test, (
            f"service {name}'s healthcheck needs a tool the image lacks"
        )


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            assert dep in services, f"service {name} depends on {dep}, which does not exist"
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
    missing = {".venv", ".git", ".stack"} - lines
    assert not missing, f".dockerignore does not exclude {sorted(missing)}"
