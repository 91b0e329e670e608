"""Request validation: one case per rule, each naming the field it blames; valid orders and fingerprints."""

from __future__ import annotations

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
    ("slippage negative", body(slippageBps=-1), "slippageBps", "from 0 to 10000"),
    ("slippage too large", body(slippageBps=10_001), "slippageBps", "from 0 to 10000"),
    ("slippage fractional", body(slippageBps=1.5), "slippageBps", "must be an integer, got a number"),
    ("slippage string", body(slippageBps="100"), "slippageBps", "must be an integer, got a string"),
    ("slippage bool", body(slippageBps=False), "slippageBps", "must be an integer, got a boolean"),
    ("type limit", body(type="limit"), "type", "'market'"),
    ("type not a string", body(type=1), "type", "'market'"),
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
