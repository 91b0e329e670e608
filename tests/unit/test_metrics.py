"""Each service's metrics: what the instrumentation counts, and that the exposition parses with the
Prometheus text parser. The registry is process-wide, so tests compare values before and after."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.examples import confirmed_stream, failed_stream
from services import metrics
from services.envvars import ConfigError
from services.metrics import ingress, router, venue
from services.venue.interface import SwapStatus, VenueRejected, VenueUnavailable


def value(name: str, **labels: str) -> float:
    """The current value of one sample, read back through the text format and the Prometheus parser."""
    text = metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_ingress_counts_accepted_rejected_by_reason_and_times_requests() -> None:
    async def endpoint(request: Request) -> Response:
        kind = request.query_params["kind"]
        if kind == "ok":
            return Response(status_code=201)
        if kind == "replay":
            return Response(status_code=201, headers={"Idempotent-Replayed": "true"})
        if kind == "unknown":
            request.state.reject_reason = "outcome_unknown"
            return Response(status_code=503)
        return Response(status_code=int(kind))

    app = Starlette(
        routes=[Route("/o", ingress.instrument(endpoint), methods=["POST"]), metrics.metrics_route()]
    )
    before = {
        "accepted": value("oee_ingress_orders_accepted_total", replayed="false"),
        "replayed": value("oee_ingress_orders_accepted_total", replayed="true"),
        "invalid": value("oee_ingress_orders_rejected_total", reason="invalid"),
        "unknown": value("oee_ingress_orders_rejected_total", reason="outcome_unknown"),
        "unavailable": value("oee_ingress_orders_rejected_total", reason="broker_unavailable"),
        "count": value("oee_ingress_request_seconds_count"),
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for kind in ("ok", "ok", "replay", "400", "unknown", "503"):
            await client.post(f"/o?kind={kind}")
        scraped = (await client.get("/metrics")).text
    assert value("oee_ingress_orders_accepted_total", replayed="false") - before["accepted"] == 2
    assert value("oee_ingress_orders_accepted_total", replayed="true") - before["replayed"] == 1
    assert value("oee_ingress_orders_rejected_total", reason="invalid") - before["invalid"] == 1
    assert value("oee_ingress_orders_rejected_total", reason="outcome_unknown") - before["unknown"] == 1
    assert (
        value("oee_ingress_orders_rejected_total", reason="broker_unavailable") - before["unavailable"] == 1
    )
    assert value("oee_ingress_request_seconds_count") - before["count"] == 6
    assert value("oee_ingress_in_flight_requests") == 0
    names = {f.name for f in text_string_to_metric_families(scraped)}
    assert {"oee_ingress_orders_accepted", "oee_ingress_request_seconds"} <= names
    assert not any(
        s.name.endswith("_created") for f in text_string_to_metric_families(scraped) for s in f.samples
    )


def test_router_observes_transitions_decisions_and_durations_from_committed_events() -> None:
    confirmed, failed = confirmed_stream(), failed_stream()
    before = {
        "submitted": value("oee_router_transitions_total", status="submitted"),
        "meteora": value("oee_router_decisions_total", venue="meteora"),
        "e2e_ok": value("oee_order_end_to_end_seconds_count", outcome="confirmed"),
        "e2e_ok_sum": value("oee_order_end_to_end_seconds_sum", outcome="confirmed"),
        "e2e_failed": value("oee_order_end_to_end_seconds_count", outcome="failed"),
        "routing_sum": value("oee_router_routing_seconds_sum"),
        "intake_count": value("oee_router_intake_delay_seconds_count"),
        "dead": value("oee_router_dead_letters_total"),
    }
    # As the router commits them: request + routing, then building + submitted, then the terminal event.
    router.observe_commit(confirmed[:2] + failed[:2], dead_letters=1)
    router.observe_commit(confirmed[2:4])
    router.observe_commit(confirmed[4:] + failed[2:])
    assert value("oee_router_transitions_total", status="submitted") - before["submitted"] == 1
    assert value("oee_router_decisions_total", venue="meteora") - before["meteora"] == 1
    assert value("oee_router_intake_delay_seconds_count") - before["intake_count"] == 2
    assert value("oee_router_routing_seconds_sum") - before["routing_sum"] == pytest.approx(0.017, abs=1e-6)
    assert value("oee_order_end_to_end_seconds_count", outcome="confirmed") - before["e2e_ok"] == 1
    assert value("oee_order_end_to_end_seconds_sum", outcome="confirmed") - before[
        "e2e_ok_sum"
    ] == pytest.approx(2.604, abs=1e-6)
    assert value("oee_order_end_to_end_seconds_count", outcome="failed") - before["e2e_failed"] == 1
    assert value("oee_router_dead_letters_total") - before["dead"] == 1


def test_router_in_flight_gauge_survives_a_racing_count() -> None:
    counts = iter([5, RuntimeError("dictionary changed size during iteration"), 7])

    def count() -> int:
        item = next(counts)
        if isinstance(item, Exception):
            raise item
        return item

    router.track_in_flight(count)
    try:
        assert value("oee_router_in_flight_orders") == 5
        assert value("oee_router_in_flight_orders") == 7
    finally:
        router.track_in_flight(lambda: 0)


def test_venue_counts_outcomes_and_settlements() -> None:
    before_ok = value("oee_venue_quotes_total", venue="raydium", outcome="ok")
    before_down = value("oee_venue_quotes_total", venue="raydium", outcome="unavailable")
    before_rejected = value("oee_venue_submits_total", venue="meteora", outcome="rejected")
    before_settled = value("oee_venue_settlements_total", venue="meteora", state="confirmed")
    with venue.counted(venue.QUOTES, "raydium"):
        pass
    with pytest.raises(VenueUnavailable), venue.counted(venue.QUOTES, "raydium"):
        raise VenueUnavailable("raydium", "down")
    with pytest.raises(VenueRejected), venue.counted(venue.SUBMITS, "meteora"):
        raise VenueRejected("meteora", "bad limit")
    venue.settled(SwapStatus(venue="meteora", client_order_id="x", state="confirmed"))
    venue.settled(SwapStatus(venue="meteora", client_order_id="y", state="pending"))
    assert value("oee_venue_quotes_total", venue="raydium", outcome="ok") - before_ok == 1
    assert value("oee_venue_quotes_total", venue="raydium", outcome="unavailable") - before_down == 1
    assert value("oee_venue_submits_total", venue="meteora", outcome="rejected") - before_rejected == 1
    assert value("oee_venue_settlements_total", venue="meteora", state="confirmed") - before_settled == 1


def test_projector_and_gateway_helpers_record_lags() -> None:
    from datetime import UTC, datetime

    from services.metrics import gateway, projector

    at = datetime(2025, 1, 1, tzinfo=UTC)
    before = value("oee_projector_apply_lag_seconds_count", projection="orders")
    projector.observe_batch("orders", 0.01, [at, at], duplicates=1, now=at.timestamp() + 2)
    assert value("oee_projector_apply_lag_seconds_count", projection="orders") - before == 2
    before = value("oee_gateway_delivery_lag_seconds_count")
    gateway.observe_delivery(at.timestamp(), now=at.timestamp() + 0.5)
    assert value("oee_gateway_delivery_lag_seconds_count") - before == 1


def test_serve_is_off_at_port_zero_and_never_fails_a_service_on_a_taken_port() -> None:
    assert metrics.serve(0) is False
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert metrics.serve(taken.getsockname()[1], "127.0.0.1") is False


def test_metrics_port_from_env() -> None:
    assert metrics.port_from_env({}, "ROUTER_METRICS_PORT") == 9308
    assert metrics.port_from_env({"ROUTER_METRICS_PORT": "0"}, "ROUTER_METRICS_PORT") == 0
    with pytest.raises(ConfigError):
        metrics.port_from_env({"ROUTER_METRICS_PORT": "x"}, "ROUTER_METRICS_PORT")
    with pytest.raises(ConfigError):
        metrics.port_from_env({"ROUTER_METRICS_PORT": "70000"}, "ROUTER_METRICS_PORT")


def test_sample_names_include_the_suffixes_prometheus_exposes() -> None:
    names = metrics.sample_names(REGISTRY)
    assert {"oee_ingress_orders_accepted_total", "oee_ingress_request_seconds_bucket"} <= names
