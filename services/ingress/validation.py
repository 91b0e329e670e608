"""Turn a request body and its Idempotency-Key header into a valid order, or into every problem with it.

Pure: no I/O, and the time is passed in. `parse_request` collects all problems before raising
`InvalidRequest`, so a client fixes its request in one round trip. Tokens and sides are compared
case-sensitively: the seed's clients send upper-case tokens (`SOL`) and lower-case sides (`buy`), and anything
else is a 400 that says so.

Three order types (`type`): `market` (the default, the seed's body exactly), `limit` (`limitPrice`, an optional
`expiresAt`) and `sniper` (`baseToken` is the token to buy, which need not be listed yet; `maxPrice`,
`minLiquidity`, an optional `expiresAt`). A resting order rests at most `max_resting_s` (24 h by default,
also its default): within the router's memory of its orders (7 days) by a wide margin. A field that belongs
to another type is refused, not ignored: a client that believes it set a limit must not get a market order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from events.bounds import MAXIMA
from events.envelope import TOKEN_PATTERN, OrderType, Side
from services.http.problems import Problem

ORDER_TYPES: tuple[OrderType, ...] = ("market", "limit", "sniper")
MAX_RESTING_S = 24 * 3600.0  # the longest a limit or sniper order may rest, and how long it rests by default
_TOKEN = re.compile(TOKEN_PATTERN)
# Fields of one order type only: sent with another, they are refused.
_ONLY: dict[str, tuple[OrderType, ...]] = {
    "slippageBps": ("market",),
    "limitPrice": ("limit",),
    "maxPrice": ("sniper",),
    "minLiquidity": ("sniper",),
    "expiresAt": ("limit", "sniper"),
}
DEFAULT_SLIPPAGE_BPS = 100
MAX_SLIPPAGE_BPS = 10_000
MAX_KEY_LENGTH = 255
KEY_FIELD = "Idempotency-Key"
_MISSING: Any = object()


class InvalidRequest(ValueError):
    """The request is unusable; `problems` lists every reason, one per field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        return "invalid order request: " + "; ".join(f"{p.field} {p.message}" for p in self.problems)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated order, in the contract's vocabulary. `expires_at` is resolved (the request's, or the
    default); `expiry_given` says whether the request named it (what its fingerprint covers)."""

    base_token: str
    quote_token: str
    side: Side
    amount_in: float
    slippage_bps: int
    order_type: OrderType = "market"
    limit_price: float | None = None
    max_price: float | None = None
    min_liquidity: float | None = None
    expires_at: datetime | None = None
    expiry_given: bool = False

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical form: sorted keys, defaults filled in, amounts as floats.

        Two bodies that mean the same order (`100` vs `100.0`, slippage omitted vs `100`, key order, extra
        fields) have the same fingerprint; the Idempotency-Key check compares these. A market order's form
        is the one it had before the other types existed (its keys keep their fingerprints); a resting
        order's covers its own fields, and `expiresAt` as sent (not the default it got: a retry an hour
        later is the same request).
        """
        form: dict[str, Any] = {
            "amountIn": self.amount_in,
            "baseToken": self.base_token,
            "quoteToken": self.quote_token,
            "side": self.side,
            "slippageBps": self.slippage_bps,
            "type": self.order_type,
        }
        if self.order_type != "market":
            del form["slippageBps"]
            form.update(
                limitPrice=self.limit_price,
                maxPrice=self.max_price,
                minLiquidity=self.min_liquidity,
                expiresAt=_iso(self.expires_at) if self.expiry_given else None,
            )
        return hashlib.sha256(orjson.dumps(form, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_request(
    body: bytes,
    key: str | None,
    tokens: Collection[str],
    *,
    now: datetime | None = None,
    max_resting_s: float = MAX_RESTING_S,
) -> tuple[OrderRequest, str | None]:
    """The order in `body` and the Idempotency-Key (None when absent); raises `InvalidRequest`. `now` (UTC)
    is when the request arrived: a resting order's expiry is checked against it and defaulted from it."""
    problems: list[Problem] = []
    parsed_key = _check_key(key, problems)
    order = _check_order(body, tokens, problems, now or datetime.now(UTC), max_resting_s)
    if problems or order is None:
        raise InvalidRequest(problems)
    return order, parsed_key


def parse_order(
    body: bytes, tokens: Collection[str], *, now: datetime | None = None, max_resting_s: float = MAX_RESTING_S
) -> OrderRequest:
    """The order in `body`; raises `InvalidRequest`."""
    return parse_request(body, None, tokens, now=now, max_resting_s=max_resting_s)[0]


def _check_key(raw: str | None, problems: list[Problem]) -> str | None:
    if raw is None:
        return None
    key = raw
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':  # the IETF draft's sf-string form: "abc"
        key = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key:
        problems.append(Problem(KEY_FIELD, "must not be empty"))
    elif len(key) > MAX_KEY_LENGTH:
        problems.append(Problem(KEY_FIELD, f"must be at most {MAX_KEY_LENGTH} characters, got {len(key)}"))
    elif not key.isascii() or not key.isprintable():
        problems.append(Problem(KEY_FIELD, "must be printable ASCII"))
    else:
        return key
    return None


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        # orjson rejects NaN, Infinity and 1e400 outright; the stdlib reads them as floats, so the answer
        # can name the field ("amountIn must be a finite number") instead of only "not JSON".
        try:
            return json.loads(body, parse_constant=float)
        except (ValueError, RecursionError):
            raise fast_error from None


def _check_order(
    body: bytes, tokens: Collection[str], problems: list[Problem], now: datetime, max_resting_s: float
) -> OrderRequest | None:
    try:
        obj = _loads(body)
    except orjson.JSONDecodeError as exc:
        problems.append(Problem("body", f"is not valid JSON ({exc})"))
        return None
    if not isinstance(obj, dict):
        problems.append(Problem("body", f"must be a JSON object, got {_kind(obj)}"))
        return None
    before = len(problems)
    order_type = _order_type(obj.get("type"), problems)
    kind = order_type or "market"
    for field, types in _ONLY.items():
        if obj.get(field) is not None and kind not in types:
            applies = " and ".join(f"{t} orders" for t in types)
            problems.append(Problem(field, f"applies to {applies} only, not to a {kind} order"))
    if kind == "sniper":  # the token to buy may be one no venue lists yet
        base = _symbol(obj, "baseToken", problems)
    else:
        base = _token(obj, "baseToken", tokens, problems)
    quote = _token(obj, "quoteToken", tokens, problems)
    if base is not None and base == quote:
        problems.append(Problem("quoteToken", "must differ from baseToken"))
    side = _side(obj, kind, problems)
    amount = _positive(obj.get("amountIn", _MISSING), "amountIn", problems)
    slippage = _slippage(obj.get("slippageBps"), problems) if kind == "market" else 0
    limit_price = max_price = min_liquidity = expires_at = None
    if kind == "limit":
        limit_price = _positive(obj.get("limitPrice", _MISSING), "limitPrice", problems)
    if kind == "sniper":
        max_price = _positive(obj.get("maxPrice", _MISSING), "maxPrice", problems)
        min_liquidity = _positive(obj.get("minLiquidity", _MISSING), "minLiquidity", problems)
    if kind != "market":
        expires_at = _expiry(obj.get("expiresAt"), now, max_resting_s, problems)
    if len(problems) > before or order_type is None:
        return None
    assert base is not None and quote is not None and side is not None and amount is not None
    slippage = slippage if slippage is not None else DEFAULT_SLIPPAGE_BPS
    given = obj.get("expiresAt") is not None
    if kind != "market" and expires_at is None:
        expires_at = now + timedelta(seconds=max_resting_s)
    return OrderRequest(
        base, quote, side, amount, slippage, kind, limit_price, max_price, min_liquidity, expires_at, given
    )


def _order_type(value: Any, problems: list[Problem]) -> OrderType | None:
    if value is None:  # absent or null: the seed's market order
        return "market"
    if value not in ORDER_TYPES:
        problems.append(Problem("type", f"must be 'market', 'limit' or 'sniper', got {_show(value)}"))
        return None
    return cast(OrderType, value)


def _side(obj: dict[str, Any], kind: OrderType, problems: list[Problem]) -> Side | None:
    if kind == "sniper" and obj.get("side", _MISSING) is _MISSING:
        return "buy"  # a sniper buys: the side may be left out
    side = _string(obj, "side", problems)
    if side is not None and side not in ("buy", "sell"):
        problems.append(Problem("side", f"must be 'buy' or 'sell', got {_show(side)}"))
        return None
    if side is not None and kind == "sniper" and side != "buy":
        problems.append(Problem("side", "must be 'buy' for a sniper order (it buys the listed token)"))
        return None
    return cast(Side | None, side)


def _symbol(obj: dict[str, Any], field: str, problems: list[Problem]) -> str | None:
    value = _string(obj, field, problems)
    if value is not None and not _TOKEN.fullmatch(value):
        problems.append(
            Problem(
                field, f"must be a token symbol of 2 to 16 upper-case letters or digits, got {_show(value)}"
            )
        )
        return None
    return value


def _expiry(value: Any, now: datetime, max_resting_s: float, problems: list[Problem]) -> datetime | None:
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        problems.append(
            Problem(
                "expiresAt",
                f"must be an RFC 3339 time with its zone, like 2025-03-14T09:26:53Z, got {_show(value)}",
            )
        )
        return None
    parsed = parsed.astimezone(UTC)
    if parsed <= now:
        problems.append(Problem("expiresAt", f"must be in the future (now is {_iso(now)})"))
        return None
    if parsed > now + timedelta(seconds=max_resting_s):
        problems.append(Problem("expiresAt", f"must be at most {max_resting_s / 3600:g} h from now"))
        return None
    return parsed


def _iso(at: datetime | None) -> str | None:
    return (
        None if at is None else at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _string(obj: dict[str, Any], field: str, problems: list[Problem]) -> str | None:
    value = obj.get(field, _MISSING)
    if value is _MISSING:
        problems.append(Problem(field, "is required"))
    elif not isinstance(value, str):
        problems.append(Problem(field, f"must be a string, got {_kind(value)}"))
    else:
        return value
    return None


def _token(obj: dict[str, Any], field: str, tokens: Collection[str], problems: list[Problem]) -> str | None:
    value = _string(obj, field, problems)
    if value is not None and value not in tokens:
        known = ", ".join(tokens)
        problems.append(Problem(field, f"must be one of {known} (case-sensitive), got {_show(value)}"))
        return None
    return value


def _positive(value: Any, field: str, problems: list[Problem]) -> float | None:
    """A finite number > 0 and at most the field's bound (`events.bounds.MAXIMA`: amounts, prices,
    liquidity)."""
    if value is _MISSING:
        problems.append(Problem(field, "is required"))
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem(field, f"must be a number, got {_kind(value)}"))
        return None
    try:
        amount = float(value)
    except OverflowError:
        amount = math.inf
    if not math.isfinite(amount):
        problems.append(Problem(field, "must be a finite number"))
    elif amount <= 0:
        problems.append(Problem(field, f"must be greater than 0, got {value!r}"))
    elif amount > MAXIMA[field]:
        problems.append(Problem(field, f"must be at most {MAXIMA[field]:g}, got {_show(value)}"))
    else:
        return amount
    return None


def _slippage(value: Any, problems: list[Problem]) -> int | None:
    if value is None:  # absent or null: the default
        return None
    if isinstance(value, float) and value.is_integer():  # 150.0 is the integer 150, as in JSON Schema
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem("slippageBps", f"must be an integer, got {_kind(value)}"))
    elif not 0 <= value <= MAX_SLIPPAGE_BPS:
        problems.append(Problem("slippageBps", f"must be from 0 to {MAX_SLIPPAGE_BPS}, got {value}"))
    else:
        return value
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    kinds: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value echoed in a message: short, and safe to encode even if it holds a lone surrogate."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
