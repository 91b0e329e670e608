"""The trigger engine's book: resting orders sorted by their bound, and the market as the venues publish it.
Pure: no I/O, no clock (times come from the events).

A limit order fires when the best venue's *executable* price for its own size, fees and price impact
included, reaches its bound: a sell at or above it, a buy at or below it. No swap of any size gets a better
price than a pool's marginal price net of the fee (`PoolState.best_price`), so only orders whose bound that
marginal price crosses can fire at all: the book keeps each (base, quote, side) sorted by bound, and a
market event walks only the front of it, the orders it crosses, computing each one's executable price on
every venue that lists the pair. Those that its size keeps from firing stay; the rest go.

A sniper fires on the first market event showing a pool of its pair (a listing, or any state when the pair
was listed before it started resting): if a venue's pool holds at least `min_liquidity` of the quote token
and prices its size at or below its maximum, it routes to those venues (best first); otherwise it is
refused with the reason, once.

An order never fires on a market event that happened before it started resting (`opened_at`) or after it
expired. The book keeps the last `history_s` of market events per pair: an order the engine learns of only
after it opened (the resting topic is read a moment after the router wrote it, or restored after a restart)
is checked against every event since its `opened_at` before it waits for the next one, so a crossing that
came and went meanwhile still fires it.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from events.market import AnyMarketEvent, PoolState, pair_key
from events.resting import RestingOrder

Side = tuple[str, str, str]  # (base, quote, side): one sorted list of limit orders


@dataclass(frozen=True, slots=True)
class Fire:
    """What the engine asks the order's owner: trigger (`refusal` None) or refuse with the reason."""

    order: RestingOrder
    venue: str
    price: float
    venues: tuple[str, ...]
    event: AnyMarketEvent
    liquidity: float | None = None
    refusal: str | None = None


@dataclass
class _Sorted:
    """One (base, quote, side) of limit orders: keys ascending (the bound for a sell, minus it for a buy, so
    the orders a rising sell price or a falling buy price reaches first come first), ids alongside."""

    keys: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def add(self, key: float, order_id: str) -> None:
        i = bisect.bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.ids.insert(i, order_id)

    def remove(self, key: float, order_id: str) -> None:
        i = bisect.bisect_left(self.keys, key)
        while i < len(self.keys) and self.keys[i] == key:
            if self.ids[i] == order_id:
                del self.keys[i], self.ids[i]
                return
            i += 1

    def front(self, up_to: float) -> int:
        """How many orders have a key at or below `up_to` (the ones a price can reach)."""
        return bisect.bisect_right(self.keys, up_to)

    def drop(self, gone: set[str], within: int) -> None:
        """Remove the orders in `gone`, all among the first `within`: one copy, not one per order."""
        keep = [(k, i) for k, i in zip(self.keys[:within], self.ids[:within], strict=True) if i not in gone]
        self.keys[:within] = [k for k, _ in keep]
        self.ids[:within] = [i for _, i in keep]

    def __len__(self) -> int:
        return len(self.keys)


class Book:
    def __init__(self, history_s: float = 60.0, history_max: int = 5_000) -> None:
        self.orders: dict[str, RestingOrder] = {}
        self._limits: dict[Side, _Sorted] = {}
        self._snipers: dict[tuple[str, str], dict[str, RestingOrder]] = {}  # (base, quote) -> waiting
        self.pools: dict[str, dict[str, PoolState]] = {}  # pair -> venue -> latest state
        self._history: dict[str, deque[AnyMarketEvent]] = {}  # pair -> recent events, oldest first
        self.history_s = history_s
        self.history_max = history_max
        self.evaluated = 0  # orders whose price was computed (what a market event cost)

    def __len__(self) -> int:
        return len(self.orders)

    # -- the resting orders ---------------------------------------------------------------------------------
    def add(self, order: RestingOrder) -> list[Fire]:
        """Rest `order` (again: its record may be read twice); what it fires on in the recent market first."""
        if order.order_id in self.orders:
            return []
        fired = self._replay(order)
        if fired is not None:
            return [fired]
        self._insert(order)
        return []

    def load(self, orders: Iterable[RestingOrder]) -> None:
        """Rest many orders at once (a restore): one sort per side instead of one insertion each. They are
        not checked against the market here: call `catch_up` once the recent market is known."""
        pending: dict[Side, list[tuple[float, str]]] = {}
        for order in orders:
            if order.order_id in self.orders:
                continue
            self.orders[order.order_id] = order
            if order.order_type == "sniper":
                self._snipers.setdefault((order.base_token, order.quote_token), {})[order.order_id] = order
            else:
                pending.setdefault(_side(order), []).append((_key(order), order.order_id))
        for side, items in pending.items():
            book = self._limits.setdefault(side, _Sorted())
            items.extend(zip(book.keys, book.ids, strict=True))
            items.sort()
            book.keys = [k for k, _ in items]
            book.ids = [i for _, i in items]

    def catch_up(self) -> list[Fire]:
        """Check the whole book against the recent market (after a `load` and `warm`): every remembered event
        again, in arrival order, each firing only orders opened before it. A handful of events against the
        sorted book, rather than every order against every event."""
        fires: list[Fire] = []
        for history in self._history.values():
            venues: dict[str, PoolState] = {}
            for event in history:
                venues[event.venue] = event.pool
                fires.extend(self._evaluate(event, venues))
        return fires

    def warm(self, event: AnyMarketEvent) -> None:
        """Learn a market event without firing anything (the recent market read at a restore)."""
        self._remember(event)
        self.pools.setdefault(event.pair, {})[event.venue] = event.pool

    def remove(self, order_id: str) -> RestingOrder | None:
        """The order no longer rests (its owner triggered, expired, cancelled or refused it)."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return None
        if order.order_type == "sniper":
            waiting = self._snipers.get((order.base_token, order.quote_token))
            if waiting is not None:
                waiting.pop(order_id, None)
        else:
            book = self._limits.get(_side(order))
            if book is not None:
                book.remove(_key(order), order_id)
        return order

    def _insert(self, order: RestingOrder) -> None:
        self.orders[order.order_id] = order
        if order.order_type == "sniper":
            self._snipers.setdefault((order.base_token, order.quote_token), {})[order.order_id] = order
        else:
            self._limits.setdefault(_side(order), _Sorted()).add(_key(order), order.order_id)

    # -- the market -----------------------------------------------------------------------------------------
    def on_market(self, event: AnyMarketEvent) -> list[Fire]:
        """Take a venue's new pool state; the orders it fires (they leave the book)."""
        self._remember(event)
        venues = self.pools.setdefault(event.pair, {})
        venues[event.venue] = event.pool
        return self._evaluate(event, venues)

    def _evaluate(self, event: AnyMarketEvent, venues: dict[str, PoolState]) -> list[Fire]:
        a, b = event.pool.token_a, event.pool.token_b
        fires: list[Fire] = []
        for base, quote in ((a, b), (b, a)):
            for side in ("sell", "buy"):
                fires.extend(self._limits_fired((base, quote, side), venues, event))
            fires.extend(self._snipers_fired(base, quote, venues, event))
        return fires

    def _remember(self, event: AnyMarketEvent) -> None:
        history = self._history.setdefault(event.pair, deque())
        history.append(event)
        horizon = event.occurred_at.timestamp() - self.history_s
        while history and (len(history) > self.history_max or history[0].occurred_at.timestamp() < horizon):
            history.popleft()

    def _limits_fired(self, side: Side, venues: dict[str, PoolState], event: AnyMarketEvent) -> list[Fire]:
        book = self._limits.get(side)
        if not book:
            return []
        base, quote, direction = side
        best = _marginal(venues, base, quote, direction)
        if best is None:
            return []
        within = book.front(best if direction == "sell" else -best)
        fires: list[Fire] = []
        for order_id in book.ids[:within]:
            order = self.orders[order_id]
            fired = self._limit_fires(order, venues, event)
            if fired is not None:
                fires.append(fired)
        if fires:
            gone = {f.order.order_id for f in fires}
            book.drop(gone, within)
            for order_id in gone:
                del self.orders[order_id]
        return fires

    def _limit_fires(
        self, order: RestingOrder, venues: dict[str, PoolState], event: AnyMarketEvent
    ) -> Fire | None:
        if not _live(order, event.occurred_at):
            return None
        self.evaluated += 1
        prices = _prices(order, venues)
        if not prices:
            return None
        best_venue, best_price = prices[0]
        reached = best_price >= order.bound if order.side == "sell" else best_price <= order.bound
        if not reached:
            return None
        return Fire(order, best_venue, best_price, tuple(v for v, _ in prices), event)

    def _snipers_fired(
        self, base: str, quote: str, venues: dict[str, PoolState], event: AnyMarketEvent
    ) -> list[Fire]:
        waiting = self._snipers.get((base, quote))
        if not waiting:
            return []
        fires = []
        for order in list(waiting.values()):
            fired = self._sniper_fires(order, venues, event)
            if fired is not None:
                fires.append(fired)
                del waiting[order.order_id]
                del self.orders[order.order_id]
        return fires

    def _sniper_fires(
        self, order: RestingOrder, venues: dict[str, PoolState], event: AnyMarketEvent
    ) -> Fire | None:
        if not _live(order, event.occurred_at):
            return None
        self.evaluated += 1
        prices = _prices(order, venues)
        if not prices:
            return None
        q = order.quote_token
        min_liquidity = order.min_liquidity or 0.0
        fit = [(v, p) for v, p in prices if venues[v].depth(q) >= min_liquidity and p <= order.bound]
        if fit:
            venue, price = fit[0]
            depth = venues[venue].depth(q)
            return Fire(order, venue, price, tuple(v for v, _ in fit), event, liquidity=depth)
        venue, price = prices[0]
        depth = venues[venue].depth(q)
        reasons = []
        for v, p in prices:
            d = venues[v].depth(q)
            if d < min_liquidity:
                reasons.append(
                    f"thin pool: {v} holds {d:,.6g} {q}, less than minLiquidity {min_liquidity:,.6g}"
                )
            if p > order.bound:
                reasons.append(
                    f"price too high: {v} asks {p:.8g} {q} per {order.base_token}, above maxPrice {order.bound:.8g}"
                )
        refusal = "guard refused the listing: " + "; ".join(reasons)
        return Fire(order, venue, price, tuple(v for v, _ in prices), event, liquidity=depth, refusal=refusal)

    def _replay(self, order: RestingOrder) -> Fire | None:
        """The first recent market event since the order opened that fires it, replayed in arrival order."""
        pair = pair_key(order.base_token, order.quote_token)
        history = self._history.get(pair)
        if not history:
            return None
        venues: dict[str, PoolState] = {}
        for event in history:
            venues[event.venue] = event.pool
            if event.occurred_at < order.opened_at:
                continue
            fired = (
                self._sniper_fires(order, venues, event)
                if order.order_type == "sniper"
                else self._limit_fires(order, venues, event)
            )
            if fired is not None:
                return fired
        return None

    def sides(self) -> Iterator[tuple[Side, int]]:
        return ((side, len(book)) for side, book in self._limits.items())


def _side(order: RestingOrder) -> Side:
    return (order.base_token, order.quote_token, order.side)


def _key(order: RestingOrder) -> float:
    return order.bound if order.side == "sell" else -order.bound


def _live(order: RestingOrder, at: datetime) -> bool:
    return order.opened_at <= at < order.expires_at


def _marginal(venues: dict[str, PoolState], base: str, quote: str, side: str) -> float | None:
    """The best price any swap could get on any venue: the highest for a sell, the lowest for a buy."""
    prices = [pool.best_price(base, quote, side) for pool in venues.values()]  # type: ignore[arg-type]
    if not prices:
        return None
    return max(prices) if side == "sell" else min(prices)


def _prices(order: RestingOrder, venues: dict[str, PoolState]) -> list[tuple[str, float]]:
    """(venue, executable price for the order's size) on every venue that lists its pair, best first."""
    out = []
    for venue, pool in venues.items():
        try:
            price = pool.price(order.base_token, order.quote_token, order.side, order.amount_in)
        except (KeyError, ValueError, ZeroDivisionError):
            continue
        out.append((venue, price))
    out.sort(key=lambda vp: -vp[1] if order.side == "sell" else vp[1])
    return out
