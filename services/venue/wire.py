"""JSON shape of the venue's records, shared by the HTTP server, the HTTP client and the ledger journal.

Field names are the dataclasses' own (snake_case); datetimes are ISO 8601 with an offset. orjson encodes the
dataclasses directly; `from_json` rebuilds them and rejects a missing or mistyped field instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any, TypeVar

import orjson

from .interface import SIDES, Side

T = TypeVar("T")


class BadRequest(ValueError):
    """A request body the venue server cannot read (a 400, not a venue error)."""


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def from_json(cls: type[T], data: Any) -> T:
    """Build dataclass `cls` from a decoded JSON object; `*_at` fields are parsed as datetimes."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is MISSING:
                raise ValueError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        value = data[f.name]
        if f.name.endswith("_at") and value is not None:
            value = datetime.fromisoformat(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    return value


def number(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a finite number")
    return float(value)


def side(body: Mapping[str, Any], key: str = "side") -> Side:
    value = body.get(key)
    if value not in SIDES:
        raise BadRequest(f"{key} must be 'buy' or 'sell'")
    return value  # type: ignore[return-value]


def optional_datetime(body: Mapping[str, Any], key: str) -> datetime | None:
    """An optional RFC 3339 timestamp with an offset (naive times are refused: whose clock would it be?)."""
    value = body.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadRequest(f"{key} must be an RFC 3339 timestamp with an offset")
    return parsed
