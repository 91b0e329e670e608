"""The market-data contract: pool states, their pricing, and strict decoding."""

from __future__ import annotations

import pytest

from events.envelope import now
from events.errors import EventValidationError, InvalidEvent, UnknownEventType
from events.examples import example_market
from events.market import (
    PoolListed,
    PoolPriced,
    PoolState,
    decode_market,
    encode_market,
    market_key,
    new_market_event,
    pair_key,
)

POOL = PoolState(token_a="SOL", token_b="USDC", reserve_a=10_000.0, reserve_b=1_500_000.0, fee_bps=25.0)


def test_examples_round_trip_keyed_by_pair() -> None:
    for event in example_market().values():
        assert decode_market(encode_market(event)) == event
        assert market_key(event) == event.pair.encode()
    assert pair_key("USDC", "SOL") == pair_key("SOL", "USDC") == "SOL/USDC"


def test_a_pool_prices_a_swap_with_its_fee_and_impact() -> None:
    small_sell = POOL.price("SOL", "USDC", "sell", 0.001)
    assert small_sell == pytest.approx(150.0 * (1 - 0.0025), rel=1e-6)
    assert POOL.best_price("SOL", "USDC", "sell") == pytest.approx(150.0 * 0.9975)
    assert POOL.price("SOL", "USDC", "sell", 100.0) < small_sell, "a larger sell gets less per SOL"
    small_buy = POOL.price("SOL", "USDC", "buy", 0.15)
    assert small_buy == pytest.approx(150.0 / 0.9975, rel=1e-6) == POOL.best_price("SOL", "USDC", "buy")
    assert POOL.price("SOL", "USDC", "buy", 15_000.0) > small_buy
    # Either orientation of the pair reads the same pool.
    assert POOL.price("USDC", "SOL", "sell", 150.0) == pytest.approx(1 / small_buy, rel=1e-3)
    assert POOL.depth("USDC") == 1_500_000.0 and POOL.depth("SOL") == 10_000.0
    with pytest.raises(KeyError):
        POOL.price("ETH", "USDC", "sell", 1.0)


def test_events_are_validated_when_built_and_decoded() -> None:
    event = new_market_event(PoolPriced, venue="raydium", pool=POOL, cause="walk", occurred_at=now())
    assert event.pair == "SOL/USDC"
    with pytest.raises(ValueError, match="sort before"):
        PoolState(token_a="USDC", token_b="SOL", reserve_a=1.0, reserve_b=1.0, fee_bps=0.0)
    with pytest.raises(EventValidationError, match="reserve_b"):
        bad = PoolState(token_a="SOL", token_b="USDC", reserve_a=1.0, reserve_b=-1.0, fee_bps=0.0)
        new_market_event(PoolListed, venue="raydium", pool=bad, cause="listing")
    with pytest.raises(InvalidEvent, match="reserve_a"):
        decode_market(encode_market(event).replace(b'"reserve_a":10000.0', b'"reserve_a":-1'))
    with pytest.raises(UnknownEventType):
        decode_market(b'{"type":"PoolDrained"}')
    with pytest.raises(InvalidEvent):
        decode_market(b"\xff")
