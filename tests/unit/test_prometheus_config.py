"""deploy/prometheus and deploy/grafana agree with compose.yaml and with the metrics the code registers.

promtool is not installable here (no Prometheus package on PyPI or Debian's lists we may use), so the
checks are ours: every scrape target is a compose service on the port its configuration serves /metrics
on, with the credentials that route needs mounted from a compose secret; every alert expression parses as
PromQL (promql-parser, the Rust parser's Python binding: syntax and function names) and names only metrics
the code registers or Prometheus makes itself; the alerts the operators asked for exist; Grafana's data
source is that Prometheus and its dashboard provider reads the file compose mounts.
What it cannot prove without running them: Prometheus's own loading of the file (unknown keys are caught
by the lists below, not by its schema), and that an alert fires when it should.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import promql_parser
import pytest
import yaml

from services import metrics
from tests.compose_file import ROOT, env, load, volume_mounts

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARD = ROOT / "docs" / "grafana" / "oee-dashboard.json"

# Series Prometheus writes itself for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
# job -> (compose service, the variable holding its /metrics port, the variable its scrape secret comes from)
JOBS = {
    "api": ("api", "PORT", "OEE_OPERATOR_KEY"),
    "router": ("router", "ROUTER_METRICS_PORT", None),
    "projector": ("projector", "PROJECTOR_METRICS_PORT", None),
    "venue": ("venue", "VENUE_PORT", "VENUE_SECRET"),
}
# Keys of Prometheus's configuration this file may use (a misspelled one is an error to Prometheus).
CONFIG_KEYS = {"global", "rule_files", "scrape_configs", "alerting"}
GLOBAL_KEYS = {"scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels"}
SCRAPE_KEYS = {
    "job_name", "scrape_interval", "scrape_timeout", "metrics_path", "scheme", "authorization",
    "static_configs", "dns_sd_configs", "relabel_configs", "metric_relabel_configs", "honor_labels",
}  # fmt: skip
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
SEVERITIES = {"warning", "critical"}


def registered() -> set[str]:
    """Every sample name the engine's processes can expose: the services' metrics, the lag exporter's,
    the supervisor's (served by the API under `oee up`) and prometheus_client's process collector."""
    from prometheus_client import REGISTRY, CollectorRegistry

    from services.lag.exporter import COUNTERS, GAUGES
    from services.metrics import edge, gateway, ingress, projector, router, venue  # noqa: F401 (registers them)
    from services.metrics.supervisor import SupervisorCollector

    supervisor = CollectorRegistry()
    component = {"name": "router", "kind": "service", "restarts": 1, "state": "running", "last_exit_at": 1.0}
    supervisor.register(SupervisorCollector(lambda: {"components": [component]}))
    return (
        metrics.sample_names(REGISTRY)
        | metrics.sample_names(supervisor)
        | set(GAUGES)
        | {f"{name}_total" for name in COUNTERS}
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load()["services"]


@pytest.fixture(scope="module")
def prometheus_yml() -> dict[str, Any]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def container_to_repo(services: dict[str, Any], service: str, path: str) -> Path:
    """The repository file a container path of `service` is, through its bind mounts."""
    target = PurePosixPath(path)
    for source, mount, _ in volume_mounts(services[service]):
        if source.startswith("./") and (
            target == PurePosixPath(mount) or PurePosixPath(mount) in target.parents
        ):
            return ROOT / source / target.relative_to(mount)
    raise AssertionError(f"service {service} mounts nothing of the repository at {path}")


def rules() -> Iterator[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group.get("name")
        yield from group["rules"]


def selectors(expr: str) -> list[str]:
    """The metric names an expression selects."""
    names: list[str | None] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert None not in names, f"{expr!r} selects by {{__name__=...}}: name the metric"
    return [n for n in names if n]


# --- prometheus.yml ----------------------------------------------------------------------------------


def test_prometheus_runs_the_config_compose_mounts(services: dict[str, Any], prometheus_yml: dict) -> None:
    svc = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in svc["command"] if "=" in arg)
    assert (
        container_to_repo(services, "prometheus", flags["--config.file"]) == PROMETHEUS_DIR / "prometheus.yml"
    )
    assert all(ro for source, _, ro in volume_mounts(svc) if source.startswith("./")), (
        "mount the config read-only"
    )
    data = [t for s, t, _ in volume_mounts(svc) if not s.startswith("./")]
    assert data == [flags["--storage.tsdb.path"]], f"Prometheus keeps its data in {data}, not on a volume"
    for rule_file in prometheus_yml["rule_files"]:
        assert container_to_repo(services, "prometheus", rule_file).is_file(), (
            f"rule file {rule_file} is missing"
        )


def test_prometheus_config_uses_known_keys(prometheus_yml: dict[str, Any]) -> None:
    assert set(prometheus_yml) <= CONFIG_KEYS, set(prometheus_yml) - CONFIG_KEYS
    assert set(prometheus_yml["global"]) <= GLOBAL_KEYS, set(prometheus_yml["global"]) - GLOBAL_KEYS
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        promql_parser.parse_duration(prometheus_yml["global"][key])
    for job in prometheus_yml["scrape_configs"]:
        assert set(job) <= SCRAPE_KEYS, f"job {job.get('job_name')}: unknown keys {set(job) - SCRAPE_KEYS}"
        auth = job.get("authorization")
        if auth:
            assert set(auth) == {"type", "credentials_file"} and auth["type"] == "Bearer", (
                f"job {job['job_name']}: a bearer token from a file only (never inline `credentials`)"
            )


def _targets(job: dict[str, Any]) -> set[tuple[str, int]]:
    out = set()
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, _, port = target.rpartition(":")
            out.add((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        assert dns.get("type", "SRV") == "A", "compose's DNS answers A records (one per replica), not SRV"
        out |= {(name, int(dns["port"])) for name in dns["names"]}
    return out


def test_every_engine_process_is_scraped_where_it_serves_metrics(
    services: dict[str, Any], prometheus_yml: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_yml["scrape_configs"]}
    assert set(JOBS) <= set(jobs), f"Prometheus scrapes {sorted(jobs)}, not all of {sorted(JOBS)}"
    secrets = load().get("secrets", {})
    mounted = {s if isinstance(s, str) else s["source"] for s in services["prometheus"].get("secrets", [])}
    for name, (service, port_var, secret_var) in JOBS.items():
        job = jobs[name]
        environment = env(services, service)
        port = int(environment[port_var])
        assert environment.get("HOST", environment.get("VENUE_HOST")) == "0.0.0.0"
        assert _targets(job) == {(service, port)}, f"job {name} scrapes {_targets(job)}, not {service}:{port}"
        assert job.get("metrics_path", "/metrics") == "/metrics"
        auth = job.get("authorization")
        if secret_var is None:
            assert auth is None, f"job {name} sends credentials {service} does not ask for"
            continue
        assert auth, f"job {name} sends no credentials, and {service}'s /metrics needs them ({secret_var})"
        path = PurePosixPath(auth["credentials_file"])
        assert path.parent == PurePosixPath("/run/secrets"), f"job {name} reads its token from {path}"
        assert path.name in mounted, f"job {name} reads secret {path.name}, not mounted into prometheus"
        assert secrets[path.name] == {"environment": secret_var}, (
            f"secret {path.name} comes from {secrets[path.name]}, not ${secret_var}"
        )


# --- alerts.yml --------------------------------------------------------------------------------------


def test_every_alert_parses_and_names_registered_metrics() -> None:
    known = registered() | PROMETHEUS_SERIES
    names = []
    for rule in rules():
        assert set(rule) <= RULE_KEYS and "alert" in rule, f"not an alerting rule: {rule}"
        names.append(rule["alert"])
        assert re.fullmatch(r"Oee[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        try:
            used = selectors(rule["expr"])
        except ValueError as exc:
            raise AssertionError(f"{rule['alert']}: {rule['expr']!r} is not PromQL: {exc}") from exc
        unknown = sorted(set(used) - known)
        assert not unknown, f"{rule['alert']} names {unknown}, which no code registers"
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), rule["alert"]
    assert len(names) == len(set(names)), "alert names repeat"


def test_annotations_use_labels_the_expression_keeps() -> None:
    """`{{ $labels.x }}` is empty unless the result carries x: by (...) keeps only those (or job/instance
    when nothing aggregates)."""
    for rule in rules():
        kept = {
            label.strip()
            for clause in re.findall(r"\bby \(([^)]*)\)", rule["expr"])
            for label in clause.split(",")
        }
        if not kept:
            kept = {"job", "instance"} | set(re.findall(r"[{,]\s*([a-z_]+)\s*[=!]", rule["expr"]))
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.([A-Za-z_]+)", text):
                assert label in kept, f"{rule['alert']}: $labels.{label} is not in the result's labels {kept}"


def test_the_alerts_operators_asked_for_exist() -> None:
    by_metric: dict[str, list[str]] = {}
    for rule in rules():
        for name in selectors(rule["expr"]):
            by_metric.setdefault(name, []).append(rule["alert"])
    wanted = {
        "oee_consumer_group_status": "consumer-lag status not OK",
        "oee_orders_stuck": "stuck orders",
        "oee_router_dead_letters_total": "the router's dead letters growing",
        "oee_projector_dead_letters_total": "the projector's dead letters growing",
        "process_start_time_seconds": "a service restarting under Compose",
        "oee_supervisor_restarts_total": "a service restarting under oee up",
        "up": "a target down",
    }
    missing = {what for name, what in wanted.items() if name not in by_metric}
    assert not missing, f"no alert on {sorted(missing)}"


def test_the_metric_check_rejects_what_the_code_does_not_register() -> None:
    """The failure the check exists for: a renamed or misspelled metric in an alert."""
    assert "oee_router_dead_letter_total" not in registered()
    assert selectors("increase(oee_router_dead_letter_total[5m]) > 0") == ["oee_router_dead_letter_total"]
    with pytest.raises(ValueError):
        selectors("sum by (group) (oee_consumer_group_status > 0")


# --- grafana -----------------------------------------------------------------------------------------


def test_grafana_reads_the_provisioning_and_the_dashboard_compose_mounts(services: dict[str, Any]) -> None:
    assert container_to_repo(services, "grafana", "/etc/grafana/provisioning") == GRAFANA_DIR
    sources = yaml.safe_load((GRAFANA_DIR / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert len(sources) == 1, sources
    (source,) = sources
    assert (source["type"], source["url"], source["isDefault"]) == (
        "prometheus",
        "http://prometheus:9090",
        True,
    )
    assert "prometheus" in services and services["grafana"]["depends_on"]["prometheus"]
    assert any(str(p).endswith(":9090") for p in services["prometheus"]["ports"]), (
        "Prometheus listens on 9090"
    )
    (provider,) = yaml.safe_load((GRAFANA_DIR / "dashboards" / "oee.yml").read_text())["providers"]
    assert provider["type"] == "file"
    folder = container_to_repo(services, "grafana", provider["options"]["path"])
    assert (folder / DASHBOARD.name).resolve() == DASHBOARD.resolve(), f"the provider reads {folder}"


def test_the_dashboard_resolves_its_data_source_when_provisioned() -> None:
    """`__inputs` (${DS_PROMETHEUS}) is resolved only by the UI's import; a provisioned dashboard needs a
    data-source variable of that name, which picks the default Prometheus data source."""
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables.get("DS_PROMETHEUS")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", ds
