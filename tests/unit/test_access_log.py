"""The access log and request ids: one line per request with its id, echoed, sane ids kept, keys never logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services import logs
from services.http.access import AccessLog, request_id


async def hello(request: Request) -> Response:
    logging.getLogger("oee.test").info("inside the handler")
    return PlainTextResponse("hi", status_code=201)


def app(enabled: bool = True) -> Starlette:
    return Starlette(
        routes=[Route("/hello", hello, methods=["GET"])],
        middleware=[Middleware(AccessLog, enabled=enabled)],
    )


async def call(a: Starlette, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=a)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/hello?secret=1", headers=headers)


@pytest.mark.parametrize("offered", ["abc-123", "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b", "trace:1/2+3=@x"])
def test_a_sane_request_id_is_kept(offered: str) -> None:
    assert request_id(offered) == offered


@pytest.mark.parametrize("offered", [None, "", "a" * 129, "with space", "new\nline", 'quote"', "ä"])
def test_anything_else_gets_a_fresh_id(offered: str | None) -> None:
    fresh = request_id(offered)
    assert fresh != offered and len(fresh) == 36


async def test_one_line_per_request_with_its_id_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    secret = "oee_0123456789ab_" + "S" * 43
    r = await call(app(), {"X-Request-Id": "req-42", "Authorization": f"Bearer {secret}"})
    assert r.status_code == 201 and r.headers["x-request-id"] == "req-42"
    lines = [rec for rec in caplog.records if rec.name == "oee.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line.getMessage().startswith("GET /hello 201 ")
    assert line.request_id == "req-42" and line.status == 201 and line.bytes == 2  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    # A line logged inside the request carries the id too (through the logs' filter).
    assert logs.REQUEST_ID.get() is None, "the id does not outlive its request"
    # What the server side logged (the test's own httpx client logs its URL: not ours).
    ours = [rec for rec in caplog.records if not rec.name.startswith(("httpx", "httpcore"))]
    everything = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in ours)
    assert "S" * 43 not in everything and "secret=1" not in everything


async def test_a_generated_id_is_echoed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = await call(app(), {"X-Request-Id": "bad id\twith tab"})
    rid = r.headers["x-request-id"]
    assert rid != "bad id\twith tab" and len(rid) == 36
    assert [rec.request_id for rec in caplog.records if rec.name == "oee.access"] == [rid]  # type: ignore[attr-defined]


async def test_access_log_off_still_echoes_the_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = await call(app(enabled=False), {"X-Request-Id": "kept"})
    assert r.headers["x-request-id"] == "kept"
    assert not [rec for rec in caplog.records if rec.name == "oee.access"]


def test_the_json_format_carries_the_request_id_of_the_running_request() -> None:
    formatter = logs.JsonFormatter("oee.api")
    record = logging.LogRecord("oee.x", logging.INFO, __file__, 1, "hello", None, None)
    token = logs.REQUEST_ID.set("rid-7")
    try:
        assert logs._RequestIdFilter().filter(record)
    finally:
        logs.REQUEST_ID.reset(token)
    import orjson

    assert orjson.loads(formatter.format(record))["request_id"] == "rid-7"
