"""Turn a request body and its Idempotency-Key header into a valid order, or into every problem with it.

Pure: no I/O, no clock. `parse_request` collects all problems before raising `InvalidRequest`, so a client
fixes its request in one round trip. Tokens and sides are compared case-sensitively: the seed's clients send
upper-case tokens (`SOL`) and lower-case sides (`buy`), and anything else is a 400 that says so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from events.envelope import Side
from services.http.problems import Problem

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
    """A validated market order, in the contract's vocabulary."""

    base_token: str
    quote_token: str
    side: Side
    amount_in: float
    slippage_bps: int
    order_type: Literal["market"] = "market"

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical form: sorted keys, defaults filled in, amount as a float.

        Two bodies that mean the same order (`100` vs `100.0`, slippage omitted vs `100`, key order, extra
        fields) have the same fingerprint; the Idempotency-Key check compares these.
        """
        canonical = orjson.dumps(
            {
                "amountIn": self.amount_in,
                "baseToken": self.base_token,
                "quoteToken": self.quote_token,
                "side": self.side,
                "slippageBps": self.slippage_bps,
                "type": self.order_type,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(canonical).hexdigest()


def parse_request(body: bytes, key: str | None, tokens: Collection[str]) -> tuple[OrderRequest, str | None]:
    """The order in `body` and the Idempotency-Key (None when absent); raises `InvalidRequest`."""
    problems: list[Problem] = []
    parsed_key = _check_key(key, problems)
    order = _check_order(body, tokens, problems)
    if problems or order is None:
        raise InvalidRequest(problems)
    return order, parsed_key


def parse_order(body: bytes, tokens: Collection[str]) -> OrderRequest:
    """The order in `body`; raises `InvalidRequest`."""
    return parse_request(body, None, tokens)[0]


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


def _check_order(body: bytes, tokens: Collection[str], problems: list[Problem]) -> OrderRequest | None:
    try:
        obj = _loads(body)
    except orjson.JSONDecodeError as exc:
        problems.append(Problem("body", f"is not valid JSON ({exc})"))
        return None
    if not isinstance(obj, dict):
        problems.append(Problem("body", f"must be a JSON object, got {_kind(obj)}"))
        return None
    before = len(problems)
    base = _token(obj, "baseToken", tokens, problems)
    quote = _token(obj, "quoteToken", tokens, problems)
    if base is not None and base == quote:
        problems.append(Problem("quoteToken", "must differ from baseToken"))
    side = _string(obj, "side", problems)
    if side is not None and side not in ("buy", "sell"):
        problems.append(Problem("side", f"must be 'buy' or 'sell', got {_show(side)}"))
    amount = _amount(obj.get("amountIn", _MISSING), problems)
    slippage = _slippage(obj.get("slippageBps"), problems)
    order_type = obj.get("type")
    if order_type is not None and order_type != "market":
        problems.append(Problem("type", f"must be 'market' (the only order type), got {_show(order_type)}"))
    if len(problems) > before:
        return None
    assert base is not None and quote is not None and side is not None and amount is not None
    slippage = slippage if slippage is not None else DEFAULT_SLIPPAGE_BPS
    return OrderRequest(base, quote, cast(Side, side), amount, slippage)


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


def _amount(value: Any, problems: list[Problem]) -> float | None:
    if value is _MISSING:
        problems.append(Problem("amountIn", "is required"))
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem("amountIn", f"must be a number, got {_kind(value)}"))
        return None
    try:
        amount = float(value)
    except OverflowError:
        amount = math.inf
    if not math.isfinite(amount):
        problems.append(Problem("amountIn", "must be a finite number"))
    elif amount <= 0:
        problems.append(Problem("amountIn", f"must be greater than 0, got {value!r}"))
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
