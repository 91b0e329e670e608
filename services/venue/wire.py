"""JSON shape of the venue's records, shared by the HTTP server, the HTTP client and the ledger journal.

Field names are the dataclasses' own (snake_case); datetimes are ISO 8601 with an offset. orjson encodes the
dataclasses directly; `from_json` rebuilds them and rejects a missing or mistyped field instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any, TypeVar, get_args, get_type_hints

import orjson

from .interface import SIDES, Side

T = TypeVar("T")


class BadRequest(ValueError):
    """A request body the venue server cannot read (a 400, not a venue error)."""


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def from_json(cls: type[T], data: Any) -> T:
    """Build dataclass `cls` from a decoded JSON object; datetime fields are parsed from ISO 8601."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object for {cls.__name__}")
    times = _datetime_fields(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is MISSING:
                raise ValueError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        value = data[f.name]
        if f.name in times and value is not None:
            value = datetime.fromisoformat(value)
        kwargs[f.name] = value
    return cls(**kwargs)


_DATETIME_FIELDS: dict[type, frozenset[str]] = {}


def _datetime_fields(cls: type) -> frozenset[str]:
    """Fields typed `datetime` or `datetime | None` (`accepted_at`, `valid_until`, ...), per class once."""
    found = _DATETIME_FIELDS.get(cls)
    if found is None:
        hints = get_type_hints(cls)
        found = frozenset(n for n, hint in hints.items() if hint is datetime or datetime in get_args(hint))
        _DATETIME_FIELDS[cls] = found
    return found


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
