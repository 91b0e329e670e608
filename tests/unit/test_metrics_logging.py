"""One log format across services: JSON lines with the order id, third-party loggers through the same
handler (services/logs.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from services import logs


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards (pytest's own capture handlers included)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    libraries = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
        for n in ("uvicorn.error", "faust")
    }
    yield root
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, (handlers, propagate) in libraries.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_service_order_id_and_extras(root: logging.Logger) -> None:
    logs.setup("INFO", "json", "oee.router")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("oee.router").info(
        "duplicate request ignored", extra={"order_id": "abc", "partition": 3}
    )
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("oee.router").exception("commit failed", extra={"order_id": "def"})
    first, second = lines(stream)
    assert first["msg"] == "duplicate request ignored"
    assert (first["service"], first["logger"], first["level"]) == ("oee.router", "oee.router", "info")
    assert (first["order_id"], first["partition"]) == ("abc", 3)
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2025-01-01T00:00:00.000Z")
    assert second["order_id"] == "def" and "ValueError: boom" in second["exc"]


def test_uvicorn_and_faust_loggers_come_out_in_the_same_format(root: logging.Logger) -> None:
    stray = logging.StreamHandler(io.StringIO())
    logging.getLogger("uvicorn.error").addHandler(stray)  # as uvicorn's default config would
    logging.getLogger("uvicorn.error").propagate = False
    logs.setup("INFO", "json", "oee.ingress")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("faust.worker").warning("rebalancing")
    got = lines(stream)
    assert [(g["logger"], g["msg"]) for g in got] == [
        ("uvicorn.error", "Application startup complete."),
        ("faust.worker", "rebalancing"),
    ]
    assert stray.stream.getvalue() == ""  # type: ignore[attr-defined]


def test_text_format_appends_the_order_id(root: logging.Logger) -> None:
    logs.setup("INFO", "text", "oee.ingress")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("oee.ingress").warning("order outcome unknown", extra={"order_id": "abc"})
    assert stream.getvalue().rstrip().endswith("oee.ingress: order outcome unknown order_id=abc")
