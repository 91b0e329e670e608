"""Pure routing: best price by side net of fees, deterministic ties, reasons with numbers, limits, backoff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.router.routing import NoRoute, backoff_delays, choose_route, min_acceptable_price
from services.venue.interface import Side, VenueQuote


def q(venue: str, price: float, side: Side = "sell") -> VenueQuote:
    return VenueQuote(
        venue, "SOL", "USDC", side, price, 25.0, 1.0, price, 0.4, datetime(2025, 1, 1, tzinfo=UTC)
    )


def test_sell_takes_the_highest_price_with_the_reason_in_numbers() -> None:
    decision = choose_route([q("meteora", 148.97), q("raydium", 149.12)], "sell")
    assert decision.venue == "raydium" and decision.quote.price == 149.12
    assert decision.reason == "raydium 149.12 vs meteora 148.97 net of fees: best for sell by 10.1 bps"
    assert [x.venue for x in decision.quotes] == ["raydium", "meteora"]


def test_buy_takes_the_lowest_price() -> None:
    decision = choose_route([q("raydium", 150.40, "buy"), q("meteora", 150.25, "buy")], "buy")
    assert decision.venue == "meteora"
    assert decision.reason == "meteora 150.25 vs raydium 150.4 net of fees: best for buy by 10.0 bps"


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_ties_go_to_raydium_whatever_the_order(side: Side) -> None:
    for quotes in (
        [q("raydium", 150.0, side), q("meteora", 150.0, side)],
        [q("meteora", 150.0, side), q("raydium", 150.0, side)],
    ):
        decision = choose_route(quotes, side)
        assert decision.venue == "raydium" and "tie goes to raydium" in decision.reason


def test_unknown_venues_tie_after_the_preferred_ones_by_name() -> None:
    assert choose_route([q("orca", 1.0), q("jupiter", 1.0)], "sell").venue == "jupiter"
    assert choose_route([q("orca", 1.0), q("meteora", 1.0)], "sell").venue == "meteora"


def test_a_single_quote_wins_and_says_who_was_missing() -> None:
    decision = choose_route([q("raydium", 149.5)], "sell")
    assert decision.venue == "raydium"
    assert decision.reason == "meteora unavailable: raydium 149.5 is the only quote"
    assert "raydium unavailable" in choose_route([q("meteora", 149.5)], "sell").reason


def test_no_quotes_is_no_route_and_mixed_sides_are_a_bug() -> None:
    with pytest.raises(NoRoute, match="unavailable"):
        choose_route([], "buy")
    with pytest.raises(ValueError):
        choose_route([q("raydium", 1.0, "buy")], "sell")


@pytest.mark.parametrize(
    ("price", "side", "bps", "expected"),
    [
        (100.0, "sell", 100, 99.0),
        (100.0, "buy", 100, 101.0),
        (100.0, "sell", 0, 100.0),
        (100.0, "buy", 10_000, 200.0),
        (100.0, "sell", 10_000, 0.0),
        (0.0066, "sell", 50, 0.0066 * 0.995),
    ],
)
def test_min_acceptable_price(price: float, side: Side, bps: int, expected: float) -> None:
    assert min_acceptable_price(price, side, bps) == pytest.approx(expected)


@pytest.mark.parametrize(("price", "bps"), [(100.0, -1), (100.0, 10_001), (0.0, 100), (float("nan"), 100)])
def test_min_acceptable_price_refuses_nonsense(price: float, bps: int) -> None:
    with pytest.raises(ValueError):
        min_acceptable_price(price, "sell", bps)


def test_backoff_delays() -> None:
    assert backoff_delays() == [1.0, 2.0]  # 3 attempts, exponential from 1 s, as the seed configured
    assert backoff_delays(1) == []
    assert backoff_delays(4, base_s=0.5, factor=3.0) == [0.5, 1.5, 4.5]
    with pytest.raises(ValueError):
        backoff_delays(0)
