"""docs/grafana/oee-dashboard.json is a Grafana dashboard whose every query names metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from services import metrics
from services.lag.exporter import COUNTERS, GAUGES

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "oee-dashboard.json"
METRIC = re.compile(r"\boee_[a-z0-9_]+\b")


def exported() -> set[str]:
    """Every sample name the services and the lag exporter can expose."""
    from services.metrics import gateway, ingress, projector, router, venue  # noqa: F401 (registers them)

    return metrics.sample_names(REGISTRY) | set(GAUGES) | {f"{name}_total" for name in COUNTERS}


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        out.extend(panels(item.get("panels", [])))
    return out


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    everything = panels(board["panels"])
    assert len({p["id"] for p in everything}) == len(everything), "panel ids are unique"
    for p in everything:
        assert {"id", "type", "title", "gridPos"} <= set(p), p.get("title")
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    assert any(v["name"] == "DS_PROMETHEUS" for v in board["templating"]["list"])


def test_every_query_names_a_metric_the_code_exports() -> None:
    board = json.loads(DASHBOARD.read_text())
    known = exported()
    queries = [t["expr"] for p in panels(board["panels"]) for t in p.get("targets", [])]
    assert len(queries) > 20
    for expr in queries:
        names = METRIC.findall(expr)
        assert names, f"no oee_ metric in {expr!r}"
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{expr!r} names {unknown}, which no code exports"


def test_the_lag_gauges_and_every_service_appear_on_the_dashboard() -> None:
    text = DASHBOARD.read_text()
    for needed in ("oee_consumer_lag_offsets", "oee_consumer_lag_seconds", "oee_consumer_group_status",
                   "oee_stage_lag_seconds", "oee_ingress_", "oee_router_", "oee_venue_", "oee_order_end_to_end"):  # fmt: skip
        assert needed in text, needed
