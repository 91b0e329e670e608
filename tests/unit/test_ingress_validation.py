"""Request validation: one case per rule, each naming the field it blames; valid orders and fingerprints."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.ingress.validation import (
    DEFAULT_SLIPPAGE_BPS,
    InvalidRequest,
    OrderRequest,
    parse_order,
    parse_request,
)

TOKENS = ("SOL", "USDC", "ETH", "USDT")
VALID: dict[str, Any] = {
    "baseToken": "SOL",
    "quoteToken": "USDC",
    "side": "sell",
    "amountIn": 1.5,
    "slippageBps": 100,
}
_DROP = object()


def body(**changes: Any) -> bytes:
    obj = {k: v for k, v in {**VALID, **changes}.items() if v is not _DROP}
    return orjson.dumps(obj)


# (case id, raw body, field blamed, words the message contains)
INVALID: list[tuple[str, bytes, str, str]] = [
    ("not json", b"{not json", "body", "not valid JSON"),
    ("empty body", b"", "body", "not valid JSON"),
    ("array body", b"[1, 2]", "body", "JSON object, got an array"),
    ("string body", b'"order"', "body", "JSON object, got a string"),
    ("null body", b"null", "body", "JSON object, got null"),
    ("missing baseToken", body(baseToken=_DROP), "baseToken", "is required"),
    ("missing quoteToken", body(quoteToken=_DROP), "quoteToken", "is required"),
    ("missing side", body(side=_DROP), "side", "is required"),
    ("missing amountIn", body(amountIn=_DROP), "amountIn", "is required"),
    ("baseToken not a string", body(baseToken=5), "baseToken", "must be a string, got a number"),
    ("quoteToken null", body(quoteToken=None), "quoteToken", "must be a string, got null"),
    ("side not a string", body(side=["buy"]), "side", "must be a string, got an array"),
    ("side invalid", body(side="invalid"), "side", "'buy' or 'sell'"),
    ("side upper-case", body(side="BUY"), "side", "'buy' or 'sell'"),
    ("base equals quote", body(quoteToken="SOL"), "quoteToken", "must differ from baseToken"),
    ("unknown baseToken", body(baseToken="BTC"), "baseToken", "must be one of SOL, USDC, ETH, USDT"),
    ("lower-case token", body(quoteToken="usdc"), "quoteToken", "case-sensitive"),
    ("amount zero", body(amountIn=0), "amountIn", "greater than 0"),
    ("amount negative", body(amountIn=-1.5), "amountIn", "greater than 0"),
    ("amount bool", body(amountIn=True), "amountIn", "must be a number, got a boolean"),
    ("amount numeric string", body(amountIn="1.5"), "amountIn", "must be a number, got a string"),
    ("amount null", body(amountIn=None), "amountIn", "must be a number, got null"),
    ("amount NaN", body().replace(b"1.5", b"NaN"), "amountIn", "finite"),
    ("amount Infinity", body().replace(b"1.5", b"Infinity"), "amountIn", "finite"),
    ("amount -Infinity", body().replace(b"1.5", b"-Infinity"), "amountIn", "finite"),
    ("amount 1e400", body().replace(b"1.5", b"1e400"), "amountIn", "finite"),
    ("amount huge integer", body().replace(b"1.5", b"1" + b"0" * 400), "amountIn", "finite"),
    ("amount 1e308", body(amountIn=1e308), "amountIn", "must be at most 1e+12, got 1e+308"),
    ("amount just above the bound", body(amountIn=1e12 * (1 + 1e-15)), "amountIn", "at most 1e+12"),
    ("amount a large integer", body(amountIn=10**13), "amountIn", "at most 1e+12, got 10000000000000"),
    ("slippage negative", body(slippageBps=-1), "slippageBps", "from 0 to 10000"),
    ("slippage too large", body(slippageBps=10_001), "slippageBps", "from 0 to 10000"),
    ("slippage fractional", body(slippageBps=1.5), "slippageBps", "must be an integer, got a number"),
    ("slippage string", body(slippageBps="100"), "slippageBps", "must be an integer, got a string"),
    ("slippage bool", body(slippageBps=False), "slippageBps", "must be an integer, got a boolean"),
    ("type stop", body(type="stop"), "type", "'market', 'limit' or 'sniper'"),
    ("type not a string", body(type=1), "type", "'market', 'limit' or 'sniper'"),
    ("a limit price on a market order", body(limitPrice=150), "limitPrice", "limit orders only"),
    ("an expiry on a market order", body(expiresAt="2030-01-01T00:00:00Z"), "expiresAt", "limit orders and"),
]


@pytest.mark.parametrize(("raw", "field", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_each_rule_rejects_and_names_the_field(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_order(raw, TOKENS)
    problems = caught.value.problems
    assert [p.field for p in problems] == [field]
    assert words in problems[0].message
    assert caught.value.summary.startswith("invalid order request: ")
    orjson.dumps(caught.value.summary)  # always encodable, whatever was echoed


KEY_CASES = [("empty", "", "must not be empty"), ("quoted empty", '""', "must not be empty")]
KEY_CASES += [("too long", "k" * 256, "at most 255"), ("not ascii", "clé", "printable ASCII")]
KEY_CASES += [("control character", "a\tb", "printable ASCII")]


@pytest.mark.parametrize(("key", "words"), [c[1:] for c in KEY_CASES], ids=[c[0] for c in KEY_CASES])
def test_a_bad_idempotency_key_is_rejected(key: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body(), key, TOKENS)
    assert [(p.field, words in p.message) for p in caught.value.problems] == [("Idempotency-Key", True)]


def test_every_problem_is_listed_at_once() -> None:
    raw = orjson.dumps({"baseToken": "SOL", "side": "invalid", "amountIn": 0, "slippageBps": 20_000})
    with pytest.raises(InvalidRequest) as caught:
        parse_request(raw, "", TOKENS)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["Idempotency-Key", "quoteToken", "side", "amountIn", "slippageBps"]


def test_a_valid_body_becomes_an_order() -> None:
    assert parse_order(body(), TOKENS) == OrderRequest("SOL", "USDC", "sell", 1.5, 100, "market")


def test_defaults_and_ignored_extras() -> None:
    order = parse_order(body(slippageBps=_DROP, side="buy", amountIn=100, extra={"x": 1}), TOKENS)
    assert order == OrderRequest("SOL", "USDC", "buy", 100.0, DEFAULT_SLIPPAGE_BPS, "market")
    assert parse_order(body(slippageBps=None, type=None), TOKENS).slippage_bps == DEFAULT_SLIPPAGE_BPS
    assert parse_order(body(type="market"), TOKENS).order_type == "market"


def test_boundaries_are_accepted() -> None:
    assert parse_order(body(amountIn=1e12), TOKENS).amount_in == 1e12
    assert parse_order(body(amountIn=10**12), TOKENS).amount_in == 1e12
    assert parse_order(resting(LIMIT, limitPrice=1e12), TOKENS, now=NOW).limit_price == 1e12
    sniper = parse_order(resting(SNIPER, maxPrice=1e12, minLiquidity=1e12), TOKENS, now=NOW)
    assert (sniper.max_price, sniper.min_liquidity) == (1e12, 1e12)
    assert parse_order(body(slippageBps=0), TOKENS).slippage_bps == 0
    assert parse_order(body(slippageBps=10_000), TOKENS).slippage_bps == 10_000
    assert parse_order(body(slippageBps=150.0), TOKENS).slippage_bps == 150
    assert parse_order(body(amountIn=5e-324), TOKENS).amount_in == 5e-324


def test_keys_plain_and_structured_field_string() -> None:
    assert parse_request(body(), "abc-123", TOKENS)[1] == "abc-123"
    assert parse_request(body(), '"abc-123"', TOKENS)[1] == "abc-123"
    assert parse_request(body(), "k" * 255, TOKENS)[1] == "k" * 255
    assert parse_request(body(), None, TOKENS)[1] is None


def test_the_fingerprint_is_canonical() -> None:
    a = parse_order(orjson.dumps({**VALID, "amountIn": 100, "slippageBps": 100}), TOKENS)
    b = parse_order(
        b'{"extra": 1, "amountIn": 100.0, "side": "sell", "quoteToken": "USDC", "baseToken": "SOL"}', TOKENS
    )
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert a.fingerprint() != parse_order(body(amountIn=100.5), TOKENS).fingerprint()
    assert a.fingerprint() != parse_order(body(amountIn=100, side="buy"), TOKENS).fingerprint()


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMIT: dict[str, Any] = {"type": "limit", "baseToken": "SOL", "quoteToken": "USDC", "side": "buy",
                         "amountIn": 300, "limitPrice": 140.5}  # fmt: skip
SNIPER: dict[str, Any] = {"type": "sniper", "baseToken": "BONK", "quoteToken": "USDC", "amountIn": 500,
                          "maxPrice": 0.0001, "minLiquidity": 50_000}  # fmt: skip


def resting(template: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({k: v for k, v in {**template, **changes}.items() if v is not _DROP})


RESTING_INVALID: list[tuple[str, bytes, str, str]] = [
    ("limit without a limit", resting(LIMIT, limitPrice=_DROP), "limitPrice", "is required"),
    ("limit price zero", resting(LIMIT, limitPrice=0), "limitPrice", "greater than 0"),
    ("limit price infinite", resting(LIMIT).replace(b"140.5", b"1e400"), "limitPrice", "finite"),
    ("limit price above the bound", resting(LIMIT, limitPrice=1e13), "limitPrice", "at most 1e+12"),
    ("limit order amount 1e306", resting(LIMIT, amountIn=1e306), "amountIn", "at most 1e+12"),
    ("sniper max price above the bound", resting(SNIPER, maxPrice=2e12), "maxPrice", "at most 1e+12"),
    (
        "sniper liquidity above the bound",
        resting(SNIPER, minLiquidity=1e300),
        "minLiquidity",
        "at most 1e+12",
    ),
    ("sniper liquidity NaN", resting(SNIPER).replace(b"50000", b"NaN"), "minLiquidity", "finite"),
    ("slippage on a limit", resting(LIMIT, slippageBps=50), "slippageBps", "market orders only"),
    ("max price on a limit", resting(LIMIT, maxPrice=1), "maxPrice", "sniper orders only"),
    ("expiry not a time", resting(LIMIT, expiresAt="tomorrow"), "expiresAt", "RFC 3339"),
    ("expiry without a zone", resting(LIMIT, expiresAt="2026-03-01T13:00:00"), "expiresAt", "RFC 3339"),
    ("expiry in the past", resting(LIMIT, expiresAt="2026-03-01T11:59:59Z"), "expiresAt", "in the future"),
    ("expiry too far", resting(LIMIT, expiresAt="2026-03-02T12:00:01Z"), "expiresAt", "at most 24 h"),
    ("unknown token on a limit", resting(LIMIT, baseToken="BONK"), "baseToken", "must be one of"),
    ("sniper selling", resting(SNIPER, side="sell"), "side", "'buy' for a sniper"),
    ("sniper without a max price", resting(SNIPER, maxPrice=_DROP), "maxPrice", "is required"),
    ("sniper without liquidity", resting(SNIPER, minLiquidity=_DROP), "minLiquidity", "is required"),
    ("sniper negative liquidity", resting(SNIPER, minLiquidity=-1), "minLiquidity", "greater than 0"),
    ("sniper token symbol", resting(SNIPER, baseToken="bonk!"), "baseToken", "token symbol"),
    ("sniper unknown quote", resting(SNIPER, quoteToken="BONK"), "quoteToken", "must be one of"),
    ("limit price on a sniper", resting(SNIPER, limitPrice=1), "limitPrice", "limit orders only"),
]


@pytest.mark.parametrize(
    ("raw", "field", "words"), [c[1:] for c in RESTING_INVALID], ids=[c[0] for c in RESTING_INVALID]
)
def test_limit_and_sniper_rules_name_the_field(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_order(raw, TOKENS, now=NOW)
    assert [p.field for p in caught.value.problems] == [field]
    assert words in caught.value.problems[0].message


def test_a_limit_order_rests_until_its_expiry_or_a_day() -> None:
    order = parse_order(resting(LIMIT), TOKENS, now=NOW)
    assert (order.order_type, order.side, order.limit_price, order.slippage_bps) == ("limit", "buy", 140.5, 0)
    assert order.expires_at == NOW + timedelta(hours=24) and not order.expiry_given
    with pytest.raises(InvalidRequest, match="in the future"):  # 13:00 at +01:00 is now, not later
        parse_order(resting(LIMIT, expiresAt="2026-03-01T13:00:00+01:00"), TOKENS, now=NOW)
    later = parse_order(resting(LIMIT, expiresAt="2026-03-01T14:30:00Z"), TOKENS, now=NOW)
    assert later.expires_at == datetime(2026, 3, 1, 14, 30, tzinfo=UTC) and later.expiry_given


def test_a_sniper_buys_a_token_no_venue_lists_yet() -> None:
    order = parse_order(resting(SNIPER), TOKENS, now=NOW)
    assert (order.order_type, order.base_token, order.side) == ("sniper", "BONK", "buy")
    assert (order.max_price, order.min_liquidity, order.limit_price) == (0.0001, 50_000.0, None)


def test_fingerprints_of_resting_orders_cover_their_fields_but_not_the_default_expiry() -> None:
    first = parse_order(resting(LIMIT), TOKENS, now=NOW)
    an_hour_later = parse_order(resting(LIMIT), TOKENS, now=NOW + timedelta(hours=1))
    assert first.fingerprint() == an_hour_later.fingerprint(), "a retry is the same request"
    assert first.fingerprint() != parse_order(resting(LIMIT, limitPrice=141), TOKENS, now=NOW).fingerprint()
    timed = resting(LIMIT, expiresAt="2026-03-01T14:30:00Z")
    assert first.fingerprint() != parse_order(timed, TOKENS, now=NOW).fingerprint()
    # A market order's fingerprint is what it was before order types: its keys keep their meaning.
    market = parse_order(body(), TOKENS)
    assert market.fingerprint() == (
        hashlib.sha256(
            orjson.dumps(
                {"amountIn": 1.5, "baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "slippageBps": 100,
                 "type": "market"},
                option=orjson.OPT_SORT_KEYS,
            )
        ).hexdigest()
    )  # fmt: skip
