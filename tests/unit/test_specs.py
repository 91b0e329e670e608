"""The OpenAPI and AsyncAPI documents: valid, complete (every route, every event type, every topic), true to
the frames the gateway sends, and a route without its description fails. Pure: builds the app, serves
nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest
from openapi_spec_validator import validate as validate_openapi
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from events.examples import example_events
from events.topics import Topics
from events.types import EVENT_TYPES, status_of
from services import config
from services.api.app import create_app, parts
from services.gateway.frames import control, event_frame
from services.http.parts import Access, Part
from services.spec import asyncapi, export, frames, openapi
from services.spec.operation import SpecMount, SpecRoute, SpecWebSocket

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def settings() -> config.Settings:
    return config.load({})


@pytest.fixture(scope="module")
def app(settings: config.Settings) -> Any:
    return create_app(settings)


@pytest.fixture(scope="module")
def oas(app: Any) -> dict[str, Any]:
    return openapi.document(app.routes, app.state.policy, version="1.2.3")


@pytest.fixture(scope="module")
def aas() -> dict[str, Any]:
    return asyncapi.document(version="1.2.3", prefix="p.", partitions=5)


def test_the_openapi_document_is_valid_openapi_3_1(oas: dict[str, Any]) -> None:
    assert oas["openapi"].startswith("3.1")
    validate_openapi(oas)


def test_every_route_and_method_of_the_api_is_in_it(app: Any, oas: dict[str, Any]) -> None:
    documented = set(openapi.paths_of(oas))
    served: set[tuple[str, str]] = set()
    for r in app.routes:
        if isinstance(r, SpecWebSocket | WebSocketRoute):
            served.add(("GET", r.path))
        elif isinstance(r, SpecMount):
            served.add(("GET", r.path + "/{file}"))
        else:
            served.update((m, r.path) for m in (r.methods or ()) if m != "HEAD")
    assert served == documented
    # Each part's routes are all described ones (no plain Starlette route anywhere in the API).
    for part in parts(config.load({})):
        for r in part.routes:
            assert isinstance(r, SpecRoute | SpecWebSocket | SpecMount), (part.name, r)


def test_a_route_added_without_its_description_fails(settings: config.Settings) -> None:
    async def new(request: Any) -> PlainTextResponse:
        return PlainTextResponse("new")

    extra = Part("extra", [Route("/api/new-thing", new, methods=["GET"])])
    app = create_app(settings, [*parts(settings), extra])
    with pytest.raises(openapi.Undocumented, match="/api/new-thing"):
        openapi.document(app.routes, app.state.policy, version="0")


def test_access_in_the_document_is_the_edge_policy(app: Any, oas: dict[str, Any]) -> None:
    policy = app.state.policy
    for path, ops in oas["paths"].items():
        concrete = path.replace("{order_id}", "x").replace("{file}", "x")
        for method, op in ops.items():
            access = policy.access(concrete)
            if access is Access.PUBLIC:
                assert op["security"] == [], (method, path)
            else:
                assert op["security"] == [{"apiKey": []}], (method, path)
            assert (op.get("x-oee-access") == "operator") == (access is Access.OPERATOR), (method, path)
    public = {p for p, ops in oas["paths"].items() if all(o["security"] == [] for o in ops.values())}
    assert {"/openapi.json", "/asyncapi.json", "/docs", "/docs/assets/{file}", "/health"} <= public
    assert oas["paths"]["/metrics"]["get"]["x-oee-access"] == "operator"


def test_answers_name_their_schemas(oas: dict[str, Any]) -> None:
    execute = oas["paths"]["/api/orders/execute"]["post"]
    assert execute["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/OrderRequest")
    assert set(execute["responses"]) >= {"201", "400", "401", "409", "413", "415", "422", "429", "503"}
    schemas = oas["components"]["schemas"]
    # `side` is optional in the schema: a sniper order buys (market and limit orders need it: a 400 names it).
    assert schemas["OrderRequest"]["required"] == ["baseToken", "quoteToken", "amountIn"]
    assert "orderId" in schemas["Order"]["properties"] and "lastSeq" in schemas["Order"]["required"]


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))


def test_the_asyncapi_document_is_valid_against_the_official_3_0_schema(aas: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in _validator().iter_errors(aas)]
    assert errors == []


def test_the_official_schema_does_catch_a_broken_document(aas: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(aas))
    broken["operations"]["appendEvents"]["action"] = "publish"  # AsyncAPI 2's word
    assert list(_validator().iter_errors(broken))


def test_every_event_type_and_every_topic_is_in_the_asyncapi_document(aas: dict[str, Any]) -> None:
    topics = Topics.with_prefix("p.")
    addresses = {c["address"] for c in aas["channels"].values()}
    assert {topics.requests, topics.events, topics.dead_letters, topics.router_state} <= addresses
    assert {"/ws/orders/{orderId}", "/ws"} <= addresses
    assert set(aas["channels"]["events"]["messages"]) == set(EVENT_TYPES)
    assert set(aas["channels"]["orderStream"]["messages"]) == {f"{t}Frame" for t in EVENT_TYPES}
    assert aas["channels"]["events"]["bindings"]["kafka"]["partitions"] == 5
    for name in EVENT_TYPES:
        assert name in aas["components"]["schemas"] and f"{name}Frame" in aas["components"]["schemas"]


def _schema_of(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def test_every_example_event_and_its_frame_match_their_schemas(aas: dict[str, Any]) -> None:
    for name, event in example_events().items():
        from events.codec import encode

        _schema_of(aas, name).validate(orjson.loads(encode(event)))
        frame = orjson.loads(orjson.dumps(event_frame(event)))
        _schema_of(aas, f"{name}Frame").validate(frame)
        # Strictly: a key the gateway sends that the frame types do not declare fails here.
        typed = msgspec.convert(frame, frames.EVENT_FRAMES[name])
        assert typed.status == status_of(event)  # type: ignore[attr-defined]
        assert msgspec.to_builtins(typed) | {"type": name} == frame


def test_a_frame_key_missing_from_the_types_is_caught() -> None:
    event = example_events()["OrderConfirmed"]
    frame = orjson.loads(orjson.dumps(event_frame(event)))
    frame["data"]["surprise"] = 1
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        msgspec.convert(frame, frames.EVENT_FRAMES["OrderConfirmed"])


def test_the_control_frames_the_gateway_sends_match_their_types() -> None:
    oid = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"
    sent = [
        control("heartbeat", ts=5),
        control("subscribed", orderId=oid, fromSeq=0),
        control("unsubscribed", orderId=oid),
        control("pong", id={"any": 1}, ts=5),
        control("end", orderId=oid, code=1000, reason="order confirmed at seq 5: stream complete"),
        control("error", orderId=oid, code=4404, error="order not found"),
        control("error", code=4400, error="messages must be JSON objects"),
    ]
    union = (
        frames.Heartbeat | frames.Subscribed | frames.Unsubscribed | frames.Pong | frames.End | frames.Error
    )
    for text in sent:
        msgspec.json.decode(text, type=union)


def test_the_files_in_docs_are_up_to_date() -> None:
    assert export.stale() == [], "run `oee schemas` to refresh docs/openapi.json and docs/asyncapi.json"
