"""Pure routing decisions: which venue fills a market order, the limit it may fill at, how long to back off.

No I/O and no clock: the router gathers quotes, calls these, and records the decision (with its reason)
in the order's `building` event, so the choice can be explained and replayed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.venue.interface import Side, VenueQuote

# Tie-break order for equal prices: the seed sent ties to Raydium; unknown venues come after, by name.
PREFERENCE: tuple[str, ...] = ("raydium", "meteora")


class NoRoute(ValueError):
    """No venue quoted: the caller retries later (`backoff_delays`) or fails the order."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    venue: str
    quote: VenueQuote  # the winning quote
    reason: str  # why, in words with the numbers, for logs and the building event
    quotes: tuple[VenueQuote, ...] = ()  # every quote considered, best first


def choose_route(
    quotes: Sequence[VenueQuote], side: Side, *, venues: Sequence[str] = PREFERENCE
) -> RouteDecision:
    """Buy takes the lowest price, sell the highest; prices are already net of fees (quote per base).

    Equal prices go to the venue earlier in `venues` (Raydium first, as in the seed), then by name, so the
    same quotes always give the same route. `venues` also names who should have quoted: a missing one is
    reported as unavailable in the reason. Raises `NoRoute` if `quotes` is empty.
    """
    if not quotes:
        raise NoRoute(f"no quotes: {', '.join(venues) or 'every venue'} unavailable")
    if any(q.side != side for q in quotes):
        raise ValueError(f"quotes for another side than {side!r}")

    def rank(q: VenueQuote) -> tuple[float, int, str]:
        preference = venues.index(q.venue) if q.venue in venues else len(venues)
        return (q.price if side == "buy" else -q.price, preference, q.venue)

    ranked = tuple(sorted(quotes, key=rank))
    best = ranked[0]
    quoted = {q.venue for q in quotes}
    missing = [v for v in venues if v not in quoted]
    unavailable = f"{', '.join(missing)} unavailable" if missing else ""
    if len(ranked) == 1:
        reason = f"{unavailable or 'single quote'}: {best.venue} {_p(best.price)} is the only quote"
    else:
        runner = ranked[1]
        edge_bps = abs(best.price - runner.price) / runner.price * 1e4
        if edge_bps == 0:
            reason = (
                f"{best.venue} {_p(best.price)} ties {runner.venue} {_p(runner.price)} net of fees: "
                f"tie goes to {best.venue} by preference"
            )
        else:
            reason = (
                f"{best.venue} {_p(best.price)} vs {runner.venue} {_p(runner.price)} net of fees: "
                f"best for {side} by {edge_bps:.1f} bps"
            )
        if unavailable:
            reason += f"; {unavailable}"
    return RouteDecision(best.venue, best, reason, ranked)


def min_acceptable_price(price: float, side: Side, slippage_bps: int | float) -> float:
    """The limit sent with the swap: sell at no less than `price * (1 - s)`, buy at no more than
    `price * (1 + s)`, s = slippage_bps / 10,000. The venue enforces it at execution (the seed only showed
    it); for a buy it is really a maximum, the seed's name is kept for its clients."""
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be a positive number, got {price!r}")
    if not 0 <= slippage_bps <= 10_000:
        raise ValueError(f"slippage_bps must be within 0..10000, got {slippage_bps!r}")
    s = slippage_bps / 10_000
    return price * (1 - s) if side == "sell" else price * (1 + s)


def backoff_delays(attempts: int = 3, base_s: float = 1.0, factor: float = 2.0) -> list[float]:
    """Seconds to wait before attempts 2..`attempts` when no venue answers: 3 attempts -> [1.0, 2.0],
    the seed's configuration (3 attempts, exponential from 1 s) that it never actually ran."""
    if attempts < 1 or base_s < 0 or factor < 1:
        raise ValueError("attempts >= 1, base_s >= 0 and factor >= 1 are required")
    return [base_s * factor**i for i in range(attempts - 1)]


def _p(price: float) -> str:
    return f"{price:.6g}"
