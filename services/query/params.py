"""Turn the query string of the read API into validated values, or into every problem with it. Pure.

Problems use the shared shape (`services.http.problems.Problem`), so every 400 of the API looks the same.
The list cursor is opaque to clients: base64url of the last row's (created_at, id) and a fingerprint of the
filters it was issued for, so a cursor replayed with other filters is refused instead of skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from events.lifecycle import STATUSES
from services.http.problems import Problem

ORDER_TYPES = ("market", "limit", "sniper")
DEFAULT_WAIT_MS = 2000
MAX_WAIT_MS = 10_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_POSITION = re.compile(r"(\d{1,10}):(\d{1,19})")
LIST_PARAMS = ("status", "type", "side", "venue", "from", "to", "limit", "cursor")
"""Every parameter `GET /api/orders` takes: any other is a 400 naming it, never silently ignored (a filter
misspelt would otherwise answer every order)."""
_WAIT_PARAMS = ("minSeq", "minPosition", "waitMs")
MAX_UNKNOWN_NAMED = 10  # a query string of thousands of names gets a 400 of bounded size


class InvalidQuery(ValueError):
    """The request's parameters are unusable; `problems` names each."""

    def __init__(self, problems: Sequence[Problem], summary: str = "invalid query") -> None:
        self.problems = tuple(problems)
        self.summary = f"{summary}: " + "; ".join(f"{p.field} {p.message}" for p in self.problems)
        super().__init__(self.summary)


@dataclass(frozen=True, slots=True)
class Wait:
    """Read-your-writes: answer only from a projection that has reached these, waiting up to `wait_ms`."""

    min_seq: int | None = None
    min_position: tuple[int, int] | None = None  # (partition, offset) on the event log
    wait_ms: int = DEFAULT_WAIT_MS

    @property
    def wanted(self) -> bool:
        return self.min_seq is not None or self.min_position is not None


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    order_id: str


@dataclass(frozen=True, slots=True)
class ListQuery:
    status: str | None = None
    side: str | None = None
    venue: str | None = None
    since: datetime | None = None  # `from`, inclusive
    until: datetime | None = None  # `to`, exclusive
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None
    order_type: str | None = None

    def fingerprint(self) -> str:
        """What a cursor is bound to: the filters, not the page size or the position."""
        key = [self.status, self.side, self.venue, _iso(self.since), _iso(self.until)]
        if self.order_type is not None:  # (appended: cursors issued before the type filter stay valid)
            key.append(self.order_type)
        return hashlib.sha256(orjson.dumps(key)).hexdigest()[:12]


Params = dict[str, list[str]]


def params_of(items: Sequence[tuple[str, str]]) -> Params:
    out: Params = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


def order_id(raw: str) -> str:
    """The path's order id as the contract spells it (lower-case canonical UUID)."""
    value = raw.lower()
    if not _UUID.fullmatch(value):
        raise InvalidQuery([Problem("orderId", f"must be a UUID, got {_show(raw)}")], "invalid order id")
    return value


def wait_of(params: Params, problems: list[Problem]) -> Wait:
    min_seq = _int(params, "minSeq", 1, _INT32_MAX, problems)
    wait_ms = _int(params, "waitMs", 0, MAX_WAIT_MS, problems)
    position = None
    raw = _one(params, "minPosition", problems)
    if raw is not None:
        match = _POSITION.fullmatch(raw)
        if match is None or int(match.group(1)) > _INT32_MAX or int(match.group(2)) > _INT64_MAX:
            problems.append(
                Problem("minPosition", f"must be <partition>:<offset> on the event log, got {_show(raw)}")
            )
        else:
            position = (int(match.group(1)), int(match.group(2)))
    return Wait(min_seq, position, DEFAULT_WAIT_MS if wait_ms is None else wait_ms)


def one_order(path_id: str, params: Params) -> tuple[str, Wait]:
    """GET /api/orders/{id} and /events: the id and the read-your-writes wait."""
    problems: list[Problem] = []
    try:
        oid = order_id(path_id)
    except InvalidQuery as exc:
        problems.extend(exc.problems)
        oid = ""
    wait = wait_of(params, problems)
    if problems:
        raise InvalidQuery(problems)
    return oid, wait


def list_query(params: Params) -> ListQuery:
    """GET /api/orders: filters, page size and cursor; every problem at once, an unknown parameter too."""
    problems = unknown_list_params(params)
    status = _one(params, "status", problems)
    if status is not None and status not in STATUSES:
        problems.append(Problem("status", f"must be one of {', '.join(STATUSES)}, got {_show(status)}"))
    side = _one(params, "side", problems)
    if side is not None and side not in ("buy", "sell"):
        problems.append(Problem("side", f"must be 'buy' or 'sell', got {_show(side)}"))
    order_type = _one(params, "type", problems)
    if order_type is not None and order_type not in ORDER_TYPES:
        problems.append(Problem("type", f"must be one of {', '.join(ORDER_TYPES)}, got {_show(order_type)}"))
    venue = _one(params, "venue", problems)
    if venue is not None and not 1 <= len(venue) <= 64:
        problems.append(Problem("venue", "must be 1 to 64 characters"))
    since = _time(params, "from", problems)
    until = _time(params, "to", problems)
    if since is not None and until is not None and since >= until:
        problems.append(Problem("to", "must be later than from"))
    limit = _int(params, "limit", 1, MAX_LIMIT, problems)
    query = ListQuery(
        status, side, venue, since, until, DEFAULT_LIMIT if limit is None else limit, order_type=order_type
    )
    raw = _one(params, "cursor", problems)
    if raw is not None and not problems:
        try:
            cursor = decode_cursor(raw, query)
            query = ListQuery(status, side, venue, since, until, query.limit, cursor, order_type)
        except InvalidQuery as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidQuery(problems)
    return query


def unknown_list_params(params: Params) -> list[Problem]:
    """A problem for each parameter the list does not take, in the order given. The read-your-writes
    parameters are known elsewhere, so their reason says where they work instead."""
    problems: list[Problem] = []
    unknown = [name for name in params if name not in LIST_PARAMS]
    for name in unknown[:MAX_UNKNOWN_NAMED]:
        if name in _WAIT_PARAMS:
            reason = (
                "is not supported on the list (it reads the projection as it is, without waiting); "
                "wait on one order with GET /api/orders/{orderId}?minSeq=&waitMs="
            )
        else:
            reason = f"is not a parameter of this list; it takes {', '.join(LIST_PARAMS)}"
        problems.append(Problem(_show_name(name), reason))
    if len(unknown) > MAX_UNKNOWN_NAMED:
        more = len(unknown) - MAX_UNKNOWN_NAMED
        problems.append(Problem("query", f"has {more} more parameters this list does not take"))
    return problems


def encode_cursor(query: ListQuery, created_at: datetime, oid: str) -> str:
    body = orjson.dumps([_iso(created_at), oid, query.fingerprint()])
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_cursor(raw: str, query: ListQuery) -> Cursor:
    bad = InvalidQuery([Problem("cursor", "is not a cursor this API issued")])
    try:
        at, oid, fingerprint = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        created = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise bad from None
    if not isinstance(oid, str) or not _UUID.fullmatch(oid) or created.tzinfo is None:
        raise bad
    if fingerprint != query.fingerprint():
        raise InvalidQuery([Problem("cursor", "was issued for other filters; start again without it")])
    return Cursor(created, oid)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _one(params: Params, name: str, problems: list[Problem]) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        problems.append(Problem(name, "must be given once"))
        return None
    return values[0]


def _int(params: Params, name: str, low: int, high: int, problems: list[Problem]) -> int | None:
    raw = _one(params, name, problems)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        problems.append(Problem(name, f"must be an integer from {low} to {high}, got {_show(raw)}"))
        return None
    value = int(raw)
    if not low <= value <= high:
        problems.append(Problem(name, f"must be from {low} to {high}, got {value}"))
        return None
    return value


def _time(params: Params, name: str, problems: list[Problem]) -> datetime | None:
    raw = _one(params, name, problems)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.append(
            Problem(name, f"must be an ISO 8601 time like 2025-03-14T09:26:53Z, got {_show(raw)}")
        )
        return None
    if value.tzinfo is None:
        problems.append(Problem(name, "must say its time zone (Z or an offset such as +01:00)"))
        return None
    return value.astimezone(UTC)


def _show_name(name: str) -> str:
    # A parameter's name is the client's text: shown bounded like a value, bare when it is a plain word.
    return name if len(name) <= 40 and name.isascii() and name.isidentifier() else _show(name)


def _show(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
