"""Pure pool pricing: impact grows with size, fees and depth decide small vs large, drift is seedable."""

from __future__ import annotations

import math
import random
from itertools import permutations

import pytest

from services.venue.pool import (
    MAX_IMPACT_BPS,
    MAX_RESTORED_DEVIATION,
    METEORA,
    RAYDIUM,
    REFERENCE_USD,
    Pool,
    PoolBook,
    PoolSpec,
    PoolState,
    SwapRefused,
)

TOKENS = ("SOL", "USDC", "ETH", "USDT")


def book(spec: PoolSpec = RAYDIUM, seed: int = 7) -> PoolBook:
    return PoolBook(spec, TOKENS, random.Random(seed))


def flat_pool(spec: PoolSpec = RAYDIUM) -> Pool:
    """SOL/USDC exactly at the reference price (150)."""
    return Pool("SOL", "USDC", spec.depth_usd / 150.0, spec.depth_usd, spec)


@pytest.mark.parametrize("side", ["sell", "buy"])
def test_price_impact_grows_with_size(side: str) -> None:
    pool = flat_pool()
    sizes = [0.1, 1, 10, 100, 1000] if side == "sell" else [15, 150, 1500, 15_000, 150_000]
    fills = [pool.preview("SOL", "USDC", side, a) for a in sizes]  # type: ignore[arg-type]
    impacts = [f.price_impact_bps for f in fills]
    prices = [f.price for f in fills]
    assert impacts == sorted(impacts) and impacts[0] < 0.1 < 100 < impacts[-1]
    # A bigger sell gets less per SOL; a bigger buy pays more per SOL.
    assert prices == (sorted(prices, reverse=True) if side == "sell" else sorted(prices))


def test_small_orders_pay_the_fee_around_the_mid_net_of_fees() -> None:
    pool = flat_pool()
    sell = pool.preview("SOL", "USDC", "sell", 0.001)
    buy = pool.preview("SOL", "USDC", "buy", 0.15)
    assert sell.price == pytest.approx(150 * (1 - 0.0025), rel=1e-6)
    assert buy.price == pytest.approx(150 / (1 - 0.0025), rel=1e-6)
    assert sell.amount_out == pytest.approx(sell.price * 0.001)
    assert buy.amount_out == pytest.approx(0.15 / buy.price)


def test_every_pair_is_quotable_in_both_directions_at_cross_rates() -> None:
    pools = book()
    for base, quote in permutations(TOKENS, 2):
        assert pools.lists(base, quote)
        mid = pools.pool(base, quote, now=0.0).mid(base, quote)
        reference = REFERENCE_USD[base] / REFERENCE_USD[quote]
        assert mid == pytest.approx(reference, rel=0.01), (base, quote)
    assert pools.pool("SOL", "ETH", 0.0).mid("SOL", "ETH") == pytest.approx(0.05, rel=0.01)
    assert not pools.lists("SOL", "SOL") and not pools.lists("SOL", "BONK")
    with pytest.raises(KeyError):
        pools.pool("SOL", "BONK", 0.0)


def test_a_token_without_reference_price_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="BONK"):
        PoolBook(RAYDIUM, ["SOL", "BONK"], random.Random(1))


def test_depth_and_fee_decide_who_wins_small_and_large_orders() -> None:
    raydium, meteora = flat_pool(RAYDIUM), flat_pool(METEORA)
    small = [p.preview("SOL", "USDC", "sell", 1.0).price for p in (raydium, meteora)]
    large = [p.preview("SOL", "USDC", "sell", 100.0).price for p in (raydium, meteora)]
    assert small[1] > small[0]  # Meteora's lower fee wins a small sell
    assert large[0] > large[1]  # Raydium's depth wins a large one


def test_random_walk_is_deterministic_for_a_seed() -> None:
    times = [0.5, 1.0, 2.5, 2.5, 10.0, 60.0]

    def walk(seed: int) -> list[float]:
        pools = book(seed=seed)
        return [pools.pool("SOL", "USDC", t).mid("SOL", "USDC") for t in times]

    assert walk(42) == walk(42)
    assert walk(42) != walk(43)
    path = walk(42)
    assert path[2] == path[3]  # no time elapsed, no step
    assert len(set(path)) == len(path) - 1


def test_drift_stays_near_the_reference_over_a_long_run() -> None:
    pools = book(seed=3)
    deviations = [pools.pool("SOL", "USDC", float(t)).deviation_bps for t in range(1, 20_000, 7)]
    assert max(deviations) < 80  # stationary std is 10 bps: eight sigmas never happen here
    assert sum(deviations) / len(deviations) > 2  # but it does move


def test_executing_a_swap_moves_the_pool_and_keeps_the_fee() -> None:
    pool = flat_pool()
    k = pool.reserve_a * pool.reserve_b
    fill = pool.preview("SOL", "USDC", "sell", 100.0)
    pool.execute("SOL", "USDC", "sell", fill)
    assert pool.mid("SOL", "USDC") < 150  # selling SOL pushes its price down
    assert pool.reserve_a * pool.reserve_b > k  # the fee stays in the pool
    back = pool.preview("USDC", "SOL", "sell", fill.amount_out)  # the reverse direction trades the same pool
    pool.execute("USDC", "SOL", "sell", back)
    assert pool.mid("SOL", "USDC") == pytest.approx(150, rel=0.001)


def test_meteora_fee_rises_with_distance_from_the_reference() -> None:
    pool = flat_pool(METEORA)
    assert pool.fee_bps == pytest.approx(20.0)
    pool.shift(0.01)  # 100 bps away
    assert pool.fee_bps == pytest.approx(40.0)
    pool.shift(0.5)
    assert pool.fee_bps == METEORA.max_fee_bps
    assert flat_pool(RAYDIUM).fee_bps == 25.0


@pytest.mark.parametrize("amount", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_preview_refuses_non_positive_or_non_finite_amounts(amount: float) -> None:
    with pytest.raises(SwapRefused, match="amount_in must be a positive number"):
        flat_pool().preview("SOL", "USDC", "sell", amount)


def amount_for_impact(pool: Pool, token_in: str, share: float) -> float:
    """The amount in whose output is `share` of the output reserve (= its price impact), fee included."""
    r_in = pool.reserve_a if token_in == pool.token_a else pool.reserve_b
    return r_in * share / (1 - share) / (1 - pool.fee_bps / 1e4)


@pytest.mark.parametrize(("side", "token_in"), [("sell", "SOL"), ("buy", "USDC")])
def test_a_swap_up_to_the_impact_limit_prices_and_executes_one_beyond_is_refused(
    side: str, token_in: str
) -> None:
    limit = MAX_IMPACT_BPS / 1e4
    pool = flat_pool()
    under = pool.preview("SOL", "USDC", side, amount_for_impact(pool, token_in, limit * 0.999))  # type: ignore[arg-type]
    assert MAX_IMPACT_BPS * 0.99 < under.price_impact_bps <= MAX_IMPACT_BPS
    out_reserve = pool.reserve_b if side == "sell" else pool.reserve_a
    assert under.amount_out == pytest.approx(out_reserve * under.price_impact_bps / 1e4)  # share = impact
    before = (pool.reserve_a, pool.reserve_b)
    over = amount_for_impact(pool, token_in, limit * 1.001)
    with pytest.raises(SwapRefused, match=r"price impact 15\.0\d* % is over the 15 % limit") as refused:
        pool.preview("SOL", "USDC", side, over)  # type: ignore[arg-type]
    most = float(str(refused.value).rsplit("at most ", 1)[1].split()[0])
    assert most == pytest.approx(amount_for_impact(pool, token_in, limit), rel=1e-6)
    assert (pool.reserve_a, pool.reserve_b) == before  # a refused quote moves nothing
    pool.execute("SOL", "USDC", side, under)  # type: ignore[arg-type]
    assert pool.priceable and (pool.reserve_a, pool.reserve_b) != before


@pytest.mark.parametrize("amount", [1e20, 1e60, 1e150, 1e308])
def test_absurd_amounts_are_refused_and_never_drain_the_pool(amount: float) -> None:
    pool = flat_pool()
    before = (pool.reserve_a, pool.reserve_b)
    for side in ("buy", "sell"):
        with pytest.raises(SwapRefused, match="over the 15 % limit"):
            pool.preview("SOL", "USDC", side, amount)  # type: ignore[arg-type]
    assert (pool.reserve_a, pool.reserve_b) == before


def test_a_dust_amount_that_gets_nothing_out_is_refused() -> None:
    with pytest.raises(SwapRefused, match="too small: the swap gets nothing out"):
        flat_pool().preview("SOL", "USDC", "buy", 5e-324)  # 5e-324 USDC: less than the least SOL


def test_a_fill_that_would_drain_the_pool_is_not_executed() -> None:
    pool = flat_pool()
    fill = pool.preview("SOL", "USDC", "sell", 1.0)
    forged = type(fill)(fill.amount_in, pool.reserve_b, fill.price, fill.fee_bps, 1e4)  # all the USDC out
    before = (pool.reserve_a, pool.reserve_b)
    with pytest.raises(SwapRefused, match="unpriceable"):
        pool.execute("SOL", "USDC", "sell", forged)
    assert (pool.reserve_a, pool.reserve_b) == before


def test_maximal_swaps_in_one_direction_never_break_the_pool() -> None:
    pool = flat_pool()
    refused = 0
    for _ in range(200):  # no walk between them: the worst a burst of buys can do
        try:
            fill = pool.preview("SOL", "USDC", "buy", amount_for_impact(pool, "USDC", 0.149))
        except SwapRefused as exc:
            assert f"more than {MAX_RESTORED_DEVIATION:g}x from its reference" in str(exc)
            refused += 1
            continue
        pool.execute("SOL", "USDC", "buy", fill)
    assert refused > 0 and pool.priceable
    assert pool.mid("SOL", "USDC") <= 150 * MAX_RESTORED_DEVIATION
    pool.drift(600.0, 0.0)  # ten minutes of arbitrage bring it back
    assert pool.deviation_bps < 100 and pool.preview("SOL", "USDC", "sell", 0.5).amount_out > 0


@pytest.mark.parametrize(
    ("reserve_sol", "reserve_usdc"),
    [(0.0, 1e150), (1e150, 0.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (1e-300, 1e-300)],
)
def test_drift_and_fees_stay_finite_from_any_state(reserve_sol: float, reserve_usdc: float) -> None:
    pool = flat_pool(METEORA)
    pool.reserve_a, pool.reserve_b = reserve_sol, reserve_usdc  # only possible by hand
    pool.drift(1.0, 3.0)  # no math domain error: an unpriceable pool does not walk
    assert math.isfinite(pool.deviation_bps) and pool.fee_bps == METEORA.max_fee_bps
    with pytest.raises(SwapRefused):
        pool.preview("SOL", "USDC", "sell", 0.5)


@pytest.mark.parametrize(
    "state",
    [
        PoolState("SOL", "USDC", 0.0, 1e150),  # what 1e150 USDC bought before the bounds left
        PoolState("SOL", "USDC", 1e-14, 1e20),  # priceable, but 1e34 per SOL
        PoolState("SOL", "USDC", 1e6, 1e6),  # 1 per SOL: 150x below the reference
    ],
)
def test_a_journaled_state_the_bounds_could_not_reach_is_not_restored(state: PoolState) -> None:
    pools = book()
    pool = pools.pool("SOL", "USDC", 0.0)
    before = (pool.reserve_a, pool.reserve_b)
    with pytest.raises(SwapRefused, match="SOL/USDC"):
        pools.restore(state, touched=0.0)
    assert (pool.reserve_a, pool.reserve_b) == before
    assert pools.pool("SOL", "USDC", 5.0).preview("SOL", "USDC", "sell", 0.5).price == pytest.approx(
        150, rel=0.01
    )


def test_a_journaled_state_within_the_bounds_is_restored() -> None:
    pools = book()
    state = PoolState("SOL", "USDC", 20_000.0, 20_000.0 * 150 * MAX_RESTORED_DEVIATION * 0.99)
    assert pools.restore(state)
    assert pools.peek("SOL", "USDC").reserve_a == 20_000.0
