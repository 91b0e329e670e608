"""Pure pricing: constant-product pools whose price drifts, so routing between venues is a real choice.

Each venue holds one pool per unordered token pair. A pool quotes `out = r_out * a / (r_in + a)` with
`a = amount_in * (1 - fee)`: price impact grows with size, a deeper pool suffers less of it, a lower fee wins
small orders. Raydium is deep with a 25 bps fee; Meteora is shallower with a 20 bps base fee that rises with
the pool's distance from the reference price (a nod to its dynamic fees). Which venue wins thus depends on
the order's size and on where each pool has drifted.

Drift is an Ornstein-Uhlenbeck walk of the log price around the reference (arbitrageurs pull it back),
sampled exactly over the time elapsed since the pool was last touched, with one Gaussian draw from the
caller's `random.Random`: the same seed and the same sequence of (pair, time) calls give the same prices.
Drift moves the price at constant k; an executed swap moves the reserves themselves (and, like any swap,
its price is later pulled back by the drift). No I/O, no clock: time is passed in.

Bounds (decision 0030): a swap may take at most `MAX_IMPACT_BPS` (15 %) of the output reserve, the price
impact beyond which a swap UI such as Uniswap's refuses to trade; for a constant-product pool the share of the
output reserve a swap takes *is* its price impact, `net_in / (r_in + net_in)`. A bigger swap, or one that
would get nothing out, is refused (`SwapRefused`, with the reason) and never moves the pool, so reserves stay
finite and positive and every pool can always be priced and walked. A journaled state that breaks the bounds
(written before them) is not restored: see `PoolBook.restore`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

from events.market import swap_out

from .interface import Side

# USD reference prices; cross rates (SOL/ETH, USDC/SOL, ...) are derived from them.
REFERENCE_USD: dict[str, float] = {"SOL": 150.0, "USDC": 1.0, "ETH": 3000.0, "USDT": 1.0}
STABLECOINS = frozenset({"USDC", "USDT"})
STABLE_VOLATILITY_FACTOR = 0.1  # a stable/stable pool drifts ten times less
MAX_IMPACT_BPS = 1_500.0  # the most of a pool's output reserve one swap may take (= its price impact)
# How far from its reference a journaled price may be and still be restored: under MAX_IMPACT_BPS one swap
# moves the price by at most 1 / 0.85^2 = 1.38x, so 100x takes 14 maximal swaps in one direction with no
# arbitrage between them; a state beyond it is one the bounds could not have produced (a journal from before).
MAX_RESTORED_DEVIATION = 100.0
_MAX_LOG_DEVIATION = math.log(1e12)  # clamp of the walk's log price: exp() of it never overflows


class SwapRefused(ValueError):
    """A swap the pool will not price or execute; the message is the reason, fit for the caller."""


def priceable(reserve_a: float, reserve_b: float) -> bool:
    """Whether a pool holding these reserves can be quoted and walked: both finite and positive, and so is
    k and the price (no overflow, no underflow to zero)."""
    values = (reserve_a, reserve_b, reserve_a * reserve_b)
    if not all(math.isfinite(v) and v > 0 for v in values):
        return False
    price = reserve_b / reserve_a
    return math.isfinite(price) and price > 0


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A venue's pool shape, the same for every pair it lists."""

    fee_bps: float
    depth_usd: float  # value of each side's reserve at the reference price
    dynamic_fee_per_bps: float = 0.0  # extra fee bps per bps of distance from the reference price
    max_fee_bps: float = 100.0
    volatility_bps: float = 2.0  # std of the log price per sqrt(second): ~3 bps over a 2.5 s settlement
    reversion_per_s: float = 0.02  # pull towards the reference: half-life ~35 s, stationary std 10 bps


RAYDIUM = PoolSpec(fee_bps=25.0, depth_usd=4_000_000.0)
METEORA = PoolSpec(fee_bps=20.0, depth_usd=1_500_000.0, dynamic_fee_per_bps=0.2)


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool's reserves at one moment: what the ledger journals with a swap that moved them, so that a
    restarted venue prices from where its executed swaps left the pools (decision 0009)."""

    token_a: str
    token_b: str
    reserve_a: float
    reserve_b: float


@dataclass(frozen=True, slots=True)
class Fill:
    """The outcome of a swap of `amount_in` against a pool, priced in quote per base, net of fees."""

    amount_in: float
    amount_out: float
    price: float
    fee_bps: float
    price_impact_bps: float


class Pool:
    """A constant-product pool of `token_a` (reserve `reserve_a`) against `token_b`."""

    __slots__ = ("reference", "reserve_a", "reserve_b", "spec", "token_a", "token_b", "volatility")

    def __init__(
        self, token_a: str, token_b: str, reserve_a: float, reserve_b: float, spec: PoolSpec
    ) -> None:
        self.token_a, self.token_b = token_a, token_b
        self.reserve_a, self.reserve_b = reserve_a, reserve_b
        self.spec = spec
        self.reference = reserve_b / reserve_a  # b per a at creation: the price drift reverts to
        stable = token_a in STABLECOINS and token_b in STABLECOINS
        self.volatility = spec.volatility_bps / 1e4 * (STABLE_VOLATILITY_FACTOR if stable else 1.0)

    def copy(self) -> Pool:
        """A pool to price a batch of swaps on before any of them is durable (the original stays put)."""
        twin = Pool(self.token_a, self.token_b, self.reserve_a, self.reserve_b, self.spec)
        twin.reference = self.reference
        return twin

    def state(self) -> PoolState:
        return PoolState(self.token_a, self.token_b, self.reserve_a, self.reserve_b)

    def mid(self, base: str, quote: str) -> float:
        """Marginal price in quote per base, fee excluded."""
        r_base, r_quote = self._reserves(base, quote)
        return r_quote / r_base

    @property
    def priceable(self) -> bool:
        return priceable(self.reserve_a, self.reserve_b)

    @property
    def deviation_bps(self) -> float:
        return abs(self._log_deviation()) * 1e4

    def _log_deviation(self) -> float:
        """log(price / reference), clamped: finite whatever the reserves (an unpriceable pool reads as far
        away as the clamp, so it takes the highest fee and the walk does not move it)."""
        if not self.priceable:
            return _MAX_LOG_DEVIATION
        ratio = self.reserve_b / self.reserve_a / self.reference
        if not (math.isfinite(ratio) and ratio > 0):
            return _MAX_LOG_DEVIATION
        return max(-_MAX_LOG_DEVIATION, min(_MAX_LOG_DEVIATION, math.log(ratio)))

    @property
    def fee_bps(self) -> float:
        dynamic = self.spec.dynamic_fee_per_bps * self.deviation_bps
        return min(self.spec.fee_bps + dynamic, self.spec.max_fee_bps)

    def preview(self, base: str, quote: str, side: Side, amount_in: float) -> Fill:
        """Price a swap without moving the pool; `SwapRefused` beyond the bounds (module docstring)."""
        if not (isinstance(amount_in, int | float) and math.isfinite(amount_in) and amount_in > 0):
            raise SwapRefused(f"amount_in must be a positive number, got {amount_in!r}")
        r_base, r_quote = self._reserves(base, quote)
        token_in = base if side == "sell" else quote
        if not self.priceable:  # only a state set by hand: every path that moves a pool keeps it priceable
            raise SwapRefused(f"pool {self.token_a}/{self.token_b} cannot be priced now")
        r_in = r_base if side == "sell" else r_quote
        fee_bps = self.fee_bps
        net_in = amount_in * (1.0 - fee_bps / 1e4)
        # Out-per-in rate lost to size alone: 1 - (out / net_in) / (r_out / r_in) = net_in / (r_in + net_in),
        # which is also the share of the output reserve the swap takes.
        impact_bps = net_in / (r_in + net_in) * 1e4
        if not impact_bps <= MAX_IMPACT_BPS:
            most = _most_in(r_in, fee_bps)
            raise SwapRefused(
                f"price impact {impact_bps / 100:.4g} % is over the {MAX_IMPACT_BPS / 100:g} % limit: the swap"
                f" would take that share of the pool's {quote if side == 'sell' else base}; at most"
                f" {most:.8g} {token_in} now"
            )
        # The market-data contract's formula: what a reader of a published pool state computes is this quote.
        amount_out = swap_out(r_base, r_quote, fee_bps, side, amount_in)
        if not amount_out > 0:  # a dust amount_in: the output underflows
            raise SwapRefused(f"amount_in {amount_in!r} {token_in} is too small: the swap gets nothing out")
        price = amount_out / amount_in if side == "sell" else amount_in / amount_out
        if not (math.isfinite(price) and price > 0):
            raise SwapRefused(f"amount_in {amount_in!r} {token_in} cannot be priced: price {price!r}")
        after = PoolState(self.token_a, self.token_b, *self._after(token_in, amount_in, amount_out))
        reason = refusal(after, self.reference)
        if reason is not None:
            raise SwapRefused(f"the swap would leave {reason}")
        return Fill(amount_in, amount_out, price, fee_bps, impact_bps)

    def execute(self, base: str, quote: str, side: Side, fill: Fill) -> None:
        """Move the reserves by a fill from `preview`; the fee stays in the pool (k grows). `SwapRefused`,
        the pool unmoved, if the result could not be priced (a fill from a preview within bounds never is)."""
        reserve_a, reserve_b = self._after(base if side == "sell" else quote, fill.amount_in, fill.amount_out)
        if not priceable(reserve_a, reserve_b):
            raise SwapRefused(f"the swap would leave pool {self.token_a}/{self.token_b} unpriceable")
        self.reserve_a, self.reserve_b = reserve_a, reserve_b

    def _after(self, token_in: str, amount_in: float, amount_out: float) -> tuple[float, float]:
        """(reserve_a, reserve_b) once `amount_in` of `token_in` came in and `amount_out` went out."""
        if token_in == self.token_a:
            return self.reserve_a + amount_in, self.reserve_b - amount_out
        return self.reserve_a - amount_out, self.reserve_b + amount_in

    def drift(self, dt: float, z: float) -> None:
        """Advance the log price by an exact OU step over `dt` seconds, `z` a standard normal draw."""
        if dt <= 0 or not self.priceable:  # nothing to walk from (never reached through swaps and restores)
            return
        kappa, sigma = self.spec.reversion_per_s, self.volatility
        decay = math.exp(-kappa * dt)
        std = sigma * math.sqrt((1 - decay * decay) / (2 * kappa)) if kappa > 0 else sigma * math.sqrt(dt)
        self.shift(self._log_deviation() * decay + std * z)

    def shift(self, log_deviation: float) -> None:
        """Set the price to `reference * exp(log_deviation)` at constant k (how arbitrage moves a pool);
        a move that would leave the pool unpriceable (overflow, underflow) is not made."""
        if not (self.priceable and math.isfinite(log_deviation)):
            return
        k = self.reserve_a * self.reserve_b
        price = self.reference * math.exp(max(-_MAX_LOG_DEVIATION, min(_MAX_LOG_DEVIATION, log_deviation)))
        reserve_a, reserve_b = math.sqrt(k / price), math.sqrt(k * price)
        if priceable(reserve_a, reserve_b):
            self.reserve_a, self.reserve_b = reserve_a, reserve_b

    def _reserves(self, base: str, quote: str) -> tuple[float, float]:
        if (base, quote) == (self.token_a, self.token_b):
            return self.reserve_a, self.reserve_b
        if (base, quote) == (self.token_b, self.token_a):
            return self.reserve_b, self.reserve_a
        raise KeyError(f"pool {self.token_a}/{self.token_b} does not trade {base}/{quote}")


def refusal(state: PoolState, reference: float) -> str | None:
    """Why a pool whose walk reverts to `reference` must not take this state, or None: a reserve that is
    not finite and positive (a pool drained by a swap before the bounds), or a price further than
    `MAX_RESTORED_DEVIATION` times from the reference."""
    pair = f"{state.token_a}/{state.token_b}"
    if not priceable(state.reserve_a, state.reserve_b):
        return f"pool {pair} state ({state.reserve_a!r}, {state.reserve_b!r}) cannot be priced"
    ratio = state.reserve_b / state.reserve_a / reference
    if not (1 / MAX_RESTORED_DEVIATION <= ratio <= MAX_RESTORED_DEVIATION):
        return (
            f"pool {pair} price {state.reserve_b / state.reserve_a:.8g} is more than"
            f" {MAX_RESTORED_DEVIATION:g}x from its reference {reference:.8g}"
        )
    return None


def _most_in(r_in: float, fee_bps: float) -> float:
    """The largest amount in within MAX_IMPACT_BPS: net_in / (r_in + net_in) = s  =>  net_in = r_in s / (1 - s)."""
    share = MAX_IMPACT_BPS / 1e4
    return r_in * share / (1 - share) / (1 - fee_bps / 1e4)


class PoolBook:
    """One venue's pools, one per unordered pair of `tokens`, drifting lazily to the time they are read."""

    def __init__(
        self,
        spec: PoolSpec,
        tokens: Iterable[str],
        rng: random.Random,
        *,
        reference_usd: Mapping[str, float] = REFERENCE_USD,
        now: float = 0.0,
    ) -> None:
        tokens = sorted(dict.fromkeys(tokens))
        missing = [t for t in tokens if t not in reference_usd]
        if missing:
            raise ValueError(
                f"no reference price for {', '.join(missing)}; known: {', '.join(reference_usd)}"
            )
        self.spec = spec
        self.tokens = tuple(tokens)
        self._rng = rng
        self._pools: dict[tuple[str, str], Pool] = {}
        self._touched: dict[tuple[str, str], float] = {}
        for a, b in combinations(self.tokens, 2):
            pool = Pool(a, b, spec.depth_usd / reference_usd[a], spec.depth_usd / reference_usd[b], spec)
            # Start somewhere in the stationary distribution so venues differ from the first quote.
            stationary = (
                pool.volatility / math.sqrt(2 * spec.reversion_per_s) if spec.reversion_per_s else 0.0
            )
            pool.shift(stationary * rng.gauss(0.0, 1.0))
            self._pools[(a, b)] = pool
            self._touched[(a, b)] = now

    def pool(self, base: str, quote: str, now: float) -> Pool:
        """The pool trading base/quote (either direction), drifted to `now`. KeyError if not listed."""
        key = (base, quote) if base < quote else (quote, base)
        pool = self._pools.get(key)
        if pool is None or base == quote:
            raise KeyError(f"{base}/{quote} is not listed")
        elapsed = now - self._touched[key]
        if elapsed > 0:
            pool.drift(elapsed, self._rng.gauss(0.0, 1.0))
            self._touched[key] = now
        return pool

    def peek(self, base: str, quote: str) -> Pool:
        """The pool as it was last moved, without drifting it (no random draw): what a swap left."""
        key = (base, quote) if base < quote else (quote, base)
        return self._pools[key]

    def restore(self, state: PoolState, touched: float | None = None) -> bool:
        """Set a pool's reserves (False if this book does not list the pair). With `touched`, the pool
        drifts from that time on its next read: a restarted venue's pools move over its downtime.
        `SwapRefused`, the pool left as it is, for a state the bounds could not have produced (`refusal`)."""
        key = (state.token_a, state.token_b)
        pool = self._pools.get(key)
        if pool is None:
            return False
        reason = refusal(state, pool.reference)
        if reason is not None:
            raise SwapRefused(reason)
        pool.reserve_a, pool.reserve_b = state.reserve_a, state.reserve_b
        if touched is not None:
            self._touched[key] = touched
        return True

    def lists(self, base: str, quote: str) -> bool:
        return base != quote and ((base, quote) if base < quote else (quote, base)) in self._pools

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pools)

    def add(self, state: PoolState, now: float) -> Pool:
        """List a new pool at `state` (its price then is the reference its walk reverts to); ValueError if the
        pair is listed already. A listing journaled before a restart is added again the same way."""
        a, b = state.token_a, state.token_b
        if not a < b:
            raise ValueError(f"a pool's tokens are in order: {a}/{b}")
        if (a, b) in self._pools:
            raise ValueError(f"{a}/{b} is listed already")
        pool = Pool(a, b, state.reserve_a, state.reserve_b, self.spec)
        self._pools[(a, b)] = pool
        self._touched[(a, b)] = now
        return pool
