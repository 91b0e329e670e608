"""One log format across services: text for people, JSON lines when LOG_FORMAT=json.

Anything about an order passes `extra={"order_id": ...}` so every such line carries the order id; any other
`extra` field becomes a key of the JSON line (or `key=value` after a text line). `setup` installs the one
handler on the root logger, so third-party loggers (uvicorn, Faust/mode, aiokafka) come out in the same
format: run uvicorn with `log_config=None` and Faust's worker with `override_logging=False`.

JSON line keys: `ts` (UTC, ms, `Z`), `level`, `service`, `logger`, `msg`, then the extras, then `exc`.
A line logged while an HTTP request runs carries its `request_id` (`REQUEST_ID`, set by the API's access
log middleware, `services.http.access`).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("oee_request_id", default=None)
"""The id of the HTTP request (or WebSocket session) the current task serves, if any."""

LEVELS = ("debug", "info", "warning", "error")
"""What `LOG_LEVEL` may say (checked by `services.config.load`)."""


class _RequestIdFilter(logging.Filter):
    """Adds `request_id` to records logged while a request runs (unless the caller passed one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = REQUEST_ID.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's colourised copy of the message
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "oee") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return base


def setup(level: str = "INFO", fmt: str = "text", service: str = "oee") -> None:
    """Send every logger's records through one handler on stderr, in `fmt` (text or json)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that install handlers of their own would print a second, differently formatted copy.
    faust_loggers = [n for n in logging.root.manager.loggerDict if n.startswith(("faust.", "mode."))]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faust", "mode", "aiokafka", *faust_loggers):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
        library.disabled = False  # a dictConfig with disable_existing_loggers may have turned it off
        library.setLevel(logging.NOTSET)  # and one may have set its own level: the root's decides
    # aiokafka is chatty at INFO about normal coordinator churn; its warnings still show.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    logging.getLogger(service).debug("logging configured", extra={"format": fmt})
