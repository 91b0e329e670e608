"""The trigger engine's book, pure: which market event fires which resting order, and what it costs."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from events.market import AnyMarketEvent, PoolListed, PoolPriced, PoolState, new_market_event
from events.resting import RestingOrder
from services.triggers.book import Book

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DEPTH_SOL = 10_000.0  # a pool of 10,000 SOL against 1.5 M USDC: SOL at 150


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def tick(
    price: float, s: float, venue: str = "raydium", depth: float = DEPTH_SOL, fee_bps: float = 25.0
) -> AnyMarketEvent:
    """The SOL/USDC pool of `venue` at `price` USDC per SOL, `s` seconds after T0."""
    pool = PoolState(token_a="SOL", token_b="USDC", reserve_a=depth, reserve_b=depth * price, fee_bps=fee_bps)
    return new_market_event(PoolPriced, venue=venue, pool=pool, cause="walk", occurred_at=at(s))


def limit(
    side: str, bound: float, amount: float = 1.0, opened: float = 0.0, expires: float = 3600.0
) -> RestingOrder:
    return RestingOrder(
        order_id=str(uuid.uuid4()),
        order_type="limit",
        base_token="SOL",
        quote_token="USDC",
        side=side,  # type: ignore[arg-type]
        amount_in=amount,
        bound=bound,
        opened_at=at(opened),
        expires_at=at(expires),
    )


def sniper(
    max_price: float, min_liquidity: float, amount: float = 500.0, opened: float = 0.0
) -> RestingOrder:
    return RestingOrder(
        order_id=str(uuid.uuid4()),
        order_type="sniper",
        base_token="BONK",
        quote_token="USDC",
        side="buy",
        amount_in=amount,
        bound=max_price,
        min_liquidity=min_liquidity,
        opened_at=at(opened),
        expires_at=at(3600),
    )


def listing(venue: str, bonk: float, usdc: float, s: float = 10.0) -> AnyMarketEvent:
    pool = PoolState(token_a="BONK", token_b="USDC", reserve_a=bonk, reserve_b=usdc, fee_bps=20.0)
    return new_market_event(PoolListed, venue=venue, pool=pool, cause="listing", occurred_at=at(s))


def test_a_sell_fires_at_the_first_tick_that_reaches_it_and_not_before() -> None:
    book = Book()
    order = limit("sell", 152.0)
    book.add(order)
    for s, price in enumerate([150.0, 151.0, 152.0], start=1):  # 152 mid is 151.6 net of the fee
        assert book.on_market(tick(price, s)) == []
    first = tick(152.5, 4)
    (fired,) = book.on_market(first)
    assert (fired.order, fired.event, fired.venue, fired.venues) == (order, first, "raydium", ("raydium",))
    assert fired.price == pytest.approx(first.pool.price("SOL", "USDC", "sell", 1.0)) and fired.price >= 152.0
    assert len(book) == 0 and book.on_market(tick(160.0, 5)) == [], "fired once, then gone"


def test_a_buy_fires_when_the_price_for_its_size_comes_down_to_its_limit() -> None:
    book = Book()
    order = limit("buy", 148.0, amount=1_480.0)  # spend 1,480 USDC: about 10 SOL
    book.add(order)
    assert book.on_market(tick(148.0, 1)) == [], "148 mid is above 148 once the fee is paid"
    (fired,) = book.on_market(tick(147.4, 2))
    assert fired.price <= 148.0


def test_its_own_size_decides_not_only_the_marginal_price() -> None:
    book = Book()
    small, large = limit("sell", 151.0, amount=1.0), limit("sell", 151.0, amount=500.0)  # 5 % of the pool
    book.add(small), book.add(large)
    fired = book.on_market(tick(152.0, 1))
    assert [f.order for f in fired] == [small], "the large sell's impact keeps it below its limit"
    assert book.orders.keys() == {large.order_id}
    assert [f.order for f in book.on_market(tick(160.0, 2))] == [large]


def test_the_best_venue_fires_it_and_every_venue_that_lists_the_pair_is_named() -> None:
    book = Book()
    order = limit("sell", 151.0)
    book.add(order)
    assert book.on_market(tick(150.0, 1, "raydium")) == []
    (fired,) = book.on_market(tick(152.0, 2, "meteora", depth=4_000.0, fee_bps=20.0))
    assert (fired.venue, fired.venues) == ("meteora", ("meteora", "raydium"))


def test_an_order_never_fires_on_the_market_before_it_opened_or_after_it_expired() -> None:
    book = Book()
    later, expired = limit("sell", 151.0, opened=5.0), limit("sell", 151.0, expires=2.0)
    book.add(later), book.add(expired)
    assert book.on_market(tick(155.0, 3)) == []
    assert [f.order for f in book.on_market(tick(155.0, 6))] == [later]
    assert book.orders.keys() == {expired.order_id}, "the owner expires it; the book only never fires it"


def test_an_order_learned_late_fires_on_a_crossing_that_came_and_went_since_it_opened() -> None:
    book = Book(history_s=60.0)
    for s, price in enumerate([150.0, 155.0, 150.0], start=1):
        book.on_market(tick(price, s))
    before, crossed = limit("sell", 152.0, opened=2.5), limit("sell", 152.0, opened=1.5)
    assert book.add(before) == [], "the crossing was before it opened"
    (fired,) = book.add(crossed)
    assert fired.order == crossed and fired.event.occurred_at == at(2)
    assert crossed.order_id not in book.orders and before.order_id in book.orders


def test_a_restore_catches_up_with_the_recent_market_as_live_processing_would() -> None:
    rng = random.Random(7)
    ticks = [tick(150 + rng.uniform(-3, 3), s * 0.5) for s in range(40)]
    orders = [
        limit(rng.choice(["sell", "buy"]), 150 + rng.uniform(-3, 3), rng.uniform(1, 50), rng.uniform(0, 15))
        for _ in range(300)
    ]
    live = Book()
    live_fired = []
    for event in ticks:  # every order known from the start, ticks processed as they came
        for order in [
            o for o in orders if o.opened_at <= event.occurred_at and o.order_id not in live.orders
        ]:
            if order.order_id not in {f.order.order_id for f in live_fired}:
                live_fired += live.add(order)
        live_fired += live.on_market(event)
    restored = Book()
    for event in ticks:
        restored.warm(event)
    restored.load(orders)
    restored_fired = restored.catch_up()
    assert {f.order.order_id for f in restored_fired} == {f.order.order_id for f in live_fired}
    assert restored.orders.keys() == live.orders.keys()


def test_a_sniper_fires_on_a_listing_within_its_guards_or_is_refused_once_with_the_reason() -> None:
    book = Book()
    ok, thin, dear = sniper(1e-4, 50_000.0), sniper(1e-4, 500_000.0), sniper(1e-5, 50_000.0)
    for order in (ok, thin, dear):
        book.add(order)
    fires = {f.order.order_id: f for f in book.on_market(listing("meteora", 4e9, 100_000.0))}
    assert fires.keys() == {ok.order_id, thin.order_id, dear.order_id} and len(book) == 0
    fired = fires[ok.order_id]
    assert (fired.refusal, fired.venue, fired.venues, fired.liquidity) == (None, "meteora", ("meteora",), 1e5)
    assert fired.price == pytest.approx(500.0 / (fired.event.pool.amount_out("BONK", "USDC", "buy", 500.0)))
    assert (
        fires[thin.order_id].refusal is not None
        and "thin pool: meteora holds 100,000 USDC" in fires[thin.order_id].refusal
    )  # type: ignore[operator]
    assert "above maxPrice" in (fires[dear.order_id].refusal or "")


def test_a_sniper_waits_for_its_own_pair_and_routes_only_to_venues_within_its_guards() -> None:
    book = Book()
    order = sniper(1e-4, 50_000.0)
    book.add(order)
    assert book.on_market(tick(150.0, 1)) == [], "another pair"
    book.warm(listing("raydium", 4e9, 10_000.0, s=2))  # a thin pool, seen before (no decision on it alone)
    (fired,) = book.on_market(listing("meteora", 4e9, 100_000.0, s=3))
    assert (fired.refusal, fired.venues) == (None, ("meteora",)), "the thin venue is left out"


def test_a_tick_evaluates_only_the_orders_it_crosses_among_100000() -> None:
    rng = random.Random(1)
    book = Book()
    orders = [limit(rng.choice(["sell", "buy"]), rng.uniform(100.0, 200.0)) for _ in range(100_000)]
    book.load(orders)
    assert book.catch_up() == [], "no market yet"
    first = book.on_market(tick(150.0, 1))  # the first price: every order already crossed fires
    crossed = [o for o in orders if (o.bound <= 149.6 if o.side == "sell" else o.bound >= 150.4)]
    assert {f.order.order_id for f in first} >= {o.order_id for o in crossed if abs(o.bound - 150) > 0.5}
    book.evaluated = 0
    fired = book.on_market(tick(150.5, 2))  # 50 bps up: the sells between the two prices
    assert 0 < len(fired) <= book.evaluated < 1_000, "a few hundred orders walked, not 100,000"
    assert all(f.order.side == "sell" and f.price >= f.order.bound for f in fired)
    assert len(book) == 100_000 - len(first) - len(fired)
