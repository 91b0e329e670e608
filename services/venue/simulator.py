"""A simulated venue: pool-priced quotes, an idempotent ledger, settlement after a latency, seedable faults.

Submitting accepts the swap at once and puts its settlement on a `DueQueue` (a heap drained by one task),
so 10,000 pending swaps cost 10,000 small records, not 10,000 sleeping tasks. At settlement the price comes
from the pool *then* (drift and other swaps may have moved it) and is checked against the limit.

Journal first, memory after (decision 0009): an acceptance is journaled before the swap exists anywhere (a
failed write answers `VenueUnavailable`, "not accepted", and schedules nothing); the swaps due together are
priced one after another on copies of their pools, journaled as one batch, and only then applied: records,
pools, listeners and waiters. A batch whose write fails leaves everything as it was and is retried.

One client order id, at most one swap (decision 0009): a repeat with the same parameters gets the first
receipt, one with other parameters `SubmitConflict`, and so does an id another venue of the chain holds
(the venues built together share one `ClientOrderIds`). A submit received after its `valid_until` is
refused (`SubmitExpired`); an accepted swap still pending at its `valid_until` (a venue down past it)
settles `failed` with reason `expired`: it never executes late.

Faults, all drawn from seeded generators (separate streams for pools, faults and latency, so turning one
knob does not reshuffle the others): `failure_rate` — a quote or submit is not served (`VenueUnavailable`,
nothing accepted); `execution_failure_rate` — an accepted swap settles `failed` with a venue error;
`drop_reply_rate` — a submit is accepted but the caller gets `SubmitOutcomeUnknown`, as when a reply is lost
on the wire; `status_delay_s` — an accepted swap reads `unknown` for a while (an RPC node behind the leader).
A router survives all of them only by reconciling with `status`, never by submitting a new swap blindly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from events.envelope import TOKEN_PATTERN
from events.market import Cause
from events.market import PoolState as MarketPool

from .clock import Clock, SystemClock
from .interface import (
    SIDES,
    Side,
    SubmitConflict,
    SubmitExpired,
    SubmitOutcomeUnknown,
    SubmitReceipt,
    SwapStatus,
    VenueQuote,
    VenueRejected,
    VenueUnavailable,
)
from .journal import JournalError
from .ledger import Ledger, Settlement, SwapRecord, tx_hash
from .pool import REFERENCE_USD, Pool, PoolBook, PoolSpec, PoolState, SwapRefused
from .registry import ClientOrderIds
from .timers import DueQueue

log = logging.getLogger(__name__)

Latency = float | tuple[float, float]  # seconds, fixed or uniform in [low, high]
Swap = tuple[str, str, Side, float, float]  # what a client order id commits to: base, quote, side, amounts
VENUE_ERRORS = (
    "transaction expired: blockhash not found",
    "compute budget exceeded",
    "pool account write lock contention",
)
EXPIRED = "expired: valid_until passed before the swap executed"
_TOKEN = re.compile(TOKEN_PATTERN)
MAX_RESERVE = 1e18  # a listing's reserves: finite, positive, and small enough that k = a * b stays finite
MAX_POOLS = 1_000  # pools one venue lists: every pool is walked and published each tick


@dataclass(frozen=True, slots=True)
class PoolChange:
    """A pool's state after it moved (`walk`, `swap`) or appeared (`listing`): what the market feed
    publishes (`services.venue.market`), with the fee in force and when it happened."""

    venue: str
    pool: MarketPool
    cause: Cause
    at: datetime


SETTLE_RETRY_S = 1.0  # a settlement batch the journal could not write is priced again after this
MAX_ACCEPTING = 50_000  # acceptances waiting for the journal; beyond, submits are not accepted (503)


class SimulatedVenue:
    """One venue (Raydium or Meteora) in memory; implements `services.venue.interface.Venue`."""

    def __init__(
        self,
        name: str,
        spec: PoolSpec,
        tokens: Iterable[str],
        *,
        seed: int | str | None = None,
        reference_usd: Mapping[str, float] = REFERENCE_USD,
        quote_latency_s: Latency = 0.0,
        execution_latency_s: Latency = (2.0, 3.0),
        failure_rate: float = 0.0,
        execution_failure_rate: float = 0.0,
        drop_reply_rate: float = 0.0,
        status_delay_s: float = 0.0,
        adverse_move_bps: float = 0.0,
        clock: Clock | None = None,
        ledger: Ledger | None = None,
        order_ids: ClientOrderIds | None = None,
        max_accepting: int = MAX_ACCEPTING,
        max_pools: int = MAX_POOLS,
    ) -> None:
        self.name = name
        self.seed = random.SystemRandom().randrange(1 << 63) if seed is None else seed
        self.quote_latency_s = _latency(quote_latency_s)
        self.execution_latency_s = _latency(execution_latency_s)
        self.failure_rate = _rate("failure_rate", failure_rate)
        self.execution_failure_rate = _rate("execution_failure_rate", execution_failure_rate)
        self.drop_reply_rate = _rate("drop_reply_rate", drop_reply_rate)
        self.status_delay_s = status_delay_s
        # The market moving against every swap between its quote and its execution (slippage drills).
        self.adverse_move = adverse_move_bps / 10_000
        self.quotes_in_progress = 0
        self._clock: Clock = clock or SystemClock()
        rng = random.Random(f"{self.seed}:{name}:pools")
        self.pools = PoolBook(spec, tokens, rng, reference_usd=reference_usd, now=self._clock.now())
        self._faults = random.Random(f"{self.seed}:{name}:faults")
        self._latency_rng = random.Random(f"{self.seed}:{name}:latency")
        self.ledger = ledger if ledger is not None else Ledger()  # an empty ledger is falsy
        # Shared with the other venues of the chain by `build_venues`; a venue built alone has its own.
        self.order_ids = order_ids if order_ids is not None else ClientOrderIds()
        self.max_accepting = max_accepting
        self.max_pools = max_pools
        self._accepting: dict[str, asyncio.Future[SwapRecord]] = {}  # being journaled, not yet accepted
        self._due = DueQueue(self._clock, self._settle_due, name=f"venue-{name}-settlement")
        self._listeners: list[Callable[[SwapStatus], None]] = []
        self._market: list[Callable[[PoolChange], None]] = []
        self._listing: set[tuple[str, str]] = set()  # listings being journaled
        self._waiters: dict[str, list[asyncio.Future[SwapStatus]]] = {}
        self._closed = False
        self._resume()

    # --- the Venue interface ---------------------------------------------------------------------------

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        self._check(base, quote, side, amount_in)
        self.quotes_in_progress += 1  # observable by drills: "a router is waiting on this venue now"
        try:
            await self._delay(self.quote_latency_s)
        finally:
            self.quotes_in_progress -= 1
        if self._fault(self.failure_rate):
            raise VenueUnavailable(self.name, "simulated outage: quote not served")
        try:
            fill = self.pools.pool(base, quote, self._clock.now()).preview(base, quote, side, amount_in)
        except SwapRefused as exc:  # beyond the pool's bounds (decision 0030): a rejection, never a 500
            raise VenueRejected(self.name, str(exc)) from None
        return VenueQuote(
            venue=self.name,
            base=base,
            quote=quote,
            side=side,
            price=fill.price,
            fee_bps=fill.fee_bps,
            amount_in=amount_in,
            amount_out=fill.amount_out,
            price_impact_bps=fill.price_impact_bps,
            quoted_at=self._clock.utcnow(),
        )

    async def submit(
        self,
        client_order_id: str,
        base: str,
        quote: str,
        side: Side,
        amount_in: float,
        limit_price: float,
        valid_until: datetime | None = None,
    ) -> SubmitReceipt:
        self._check(base, quote, side, amount_in)
        if not client_order_id or not (math.isfinite(limit_price) and limit_price > 0):
            raise VenueRejected(self.name, "client_order_id and a positive limit_price are required")
        self.start()
        await self._delay(self.quote_latency_s)
        if self._fault(self.failure_rate):
            raise VenueUnavailable(self.name, "simulated outage: submit not accepted")
        swap = (base, quote, side, float(amount_in), float(limit_price))
        record = await self._record_for(client_order_id, swap, valid_until)
        r = record.receipt
        if (r.base, r.quote, r.side, r.amount_in, r.limit_price) != swap:  # never the first receipt
            raise SubmitConflict(
                self.name, f"client order id {client_order_id} is taken by a swap with other parameters"
            )
        if self._fault(self.drop_reply_rate):
            raise SubmitOutcomeUnknown(self.name, f"reply to submit {client_order_id} lost after acceptance")
        return record.receipt

    async def status(self, client_order_id: str) -> SwapStatus:
        record = self.ledger.get(client_order_id)
        if record is None or self._clock.now() < record.visible_at:
            return SwapStatus(self.name, client_order_id, "unknown")
        return record.status()

    async def status_many(self, client_order_ids: Sequence[str]) -> list[SwapStatus]:
        return [await self.status(cid) for cid in client_order_ids]

    async def aclose(self) -> None:
        self._closed = True
        await self._due.aclose()
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()
        await self.ledger.aclose()

    async def __aenter__(self) -> SimulatedVenue:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- settlement notifications and inspection -----------------------------------------------------

    def on_settled(self, callback: Callable[[SwapStatus], None]) -> Callable[[], None]:
        """Call `callback(status)` at every settlement (in the event loop); returns an unsubscriber."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def on_market(self, callback: Callable[[PoolChange], None]) -> Callable[[], None]:
        """Call `callback(change)` whenever a pool moves or is listed (in the event loop); returns an
        unsubscriber. Swaps report the pools they moved once the settlement batch is durable."""
        self._market.append(callback)
        return lambda: self._market.remove(callback)

    def step_walk(self) -> int:
        """Move every pool along its random walk to now and report each (the market ticker calls this every
        `VENUE_TICK_MS`). With a seeded venue and the same sequence of calls and times, the same prices."""
        now, at = self._clock.now(), self._clock.utcnow()
        pairs = self.pools.pairs()
        for a, b in pairs:
            self._announce(self.pools.pool(a, b, now), "walk", at)
        return len(pairs)

    async def list_pool(self, base: str, quote: str, base_reserve: float, quote_reserve: float) -> PoolState:
        """List a new pool (a new token, or a new pair of known ones) holding these reserves; its price,
        quote per base, is `quote_reserve / base_reserve`. Journaled before it exists; then quoted, traded
        and published like any pool. `VenueRejected` for a bad listing or a pair listed already."""
        for field, token in (("base", base), ("quote", quote)):
            if not isinstance(token, str) or not _TOKEN.fullmatch(token):
                raise VenueRejected(self.name, f"{field} must be 2 to 16 upper-case letters or digits")
        for field, amount in (("base_reserve", base_reserve), ("quote_reserve", quote_reserve)):
            if not (math.isfinite(amount) and 0 < amount <= MAX_RESERVE):
                raise VenueRejected(self.name, f"{field} must be a positive number up to {MAX_RESERVE:g}")
        if base == quote:
            raise VenueRejected(self.name, "base and quote must differ")
        a, b = sorted((base, quote))
        if self.pools.lists(a, b) or (a, b) in self._listing:
            raise VenueRejected(self.name, f"{a}/{b} is listed already")
        if len(self.pools.pairs()) + len(self._listing) >= self.max_pools:
            raise VenueRejected(self.name, f"{self.max_pools} pools listed already: no more on this venue")
        ra, rb = (base_reserve, quote_reserve) if a == base else (quote_reserve, base_reserve)
        state = PoolState(a, b, float(ra), float(rb))
        at = self._clock.utcnow()

        def listed() -> None:
            pool = self.pools.add(state, self._clock.now())
            self._announce(pool, "listing", at)

        self._listing.add((a, b))
        try:
            await self.ledger.list_pool(state, at, on_durable=listed)
        except JournalError as exc:
            raise VenueUnavailable(self.name, f"{exc}: not listed") from None
        finally:
            self._listing.discard((a, b))
        log.info(
            "%s listed %s/%s at %.8g %s per %s", self.name, a, b, quote_reserve / base_reserve, quote, base
        )
        return state

    def _announce(self, pool: Pool, cause: Cause, at: datetime) -> None:
        if not self._market or not pool.priceable:  # never publish a state nobody could price from
            return
        change = PoolChange(
            self.name,
            MarketPool(
                token_a=pool.token_a,
                token_b=pool.token_b,
                reserve_a=pool.reserve_a,
                reserve_b=pool.reserve_b,
                fee_bps=pool.fee_bps,
            ),
            cause,
            at,
        )
        for callback in list(self._market):
            try:
                callback(change)
            except Exception:
                log.exception("market callback failed for %s %s", self.name, change.pool.pair)

    async def wait_settled(self, client_order_id: str) -> SwapStatus:
        """Wait for an accepted swap's terminal status (KeyError if never accepted)."""
        record = self.ledger.get(client_order_id)
        if record is None:
            raise KeyError(client_order_id)
        if record.state != "pending":
            return record.status()
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(client_order_id, []).append(future)
        return await future

    def settle_now(self, client_order_id: str) -> None:
        """Settle a pending swap at once instead of at its due time (drills and tests: "the chain confirms
        it now"); journaled and announced like any settlement. Its original due time then finds it settled."""
        self._due.schedule(client_order_id, self._clock.now())

    def ledger_count(self, client_order_id: str) -> int:
        """Ledger entries written for this id: 0 or 1 if the at-most-once rule holds."""
        return self.ledger.entries(client_order_id)

    @property
    def pending_count(self) -> int:
        return len(self._due)

    def start(self) -> None:
        """Start the settlement task (needs a running loop; `submit` calls it for you)."""
        if self._closed:
            raise VenueUnavailable(self.name, "venue closed")
        self._due.start()

    # --- internals ---------------------------------------------------------------------------------------

    def _check(self, base: str, quote: str, side: Side, amount_in: float) -> None:
        if side not in SIDES:
            raise VenueRejected(self.name, f"side must be buy or sell, got {side!r}")
        if not (isinstance(amount_in, int | float) and math.isfinite(amount_in) and amount_in > 0):
            raise VenueRejected(self.name, f"amount_in must be a positive number, got {amount_in!r}")
        if not self.pools.lists(base, quote):
            raise VenueRejected(self.name, f"{base}/{quote} is not listed")

    async def _record_for(self, client_order_id: str, swap: Swap, valid_until: datetime | None) -> SwapRecord:
        """The swap under this id on this venue: found, being journaled, or accepted now."""
        # No await from the lookups to the claim: concurrent submits of one id always see each other.
        record = self.ledger.get(client_order_id)
        if record is not None:
            return record
        accepting = self._accepting.get(client_order_id)
        if accepting is None:
            accepting = self._accept(client_order_id, swap, valid_until)
        try:  # shielded: one caller giving up must not cancel the acceptance the others wait for
            return await asyncio.shield(accepting)
        except JournalError as exc:
            raise VenueUnavailable(self.name, f"{exc}: not accepted") from None

    def _accept(
        self, client_order_id: str, swap: Swap, valid_until: datetime | None
    ) -> asyncio.Future[SwapRecord]:
        owner = self.order_ids.owner(client_order_id)
        if owner is not None and owner != self.name:
            raise SubmitConflict(
                self.name, f"client order id {client_order_id} is taken by a swap on {owner}"
            )
        if valid_until is not None and self._clock.utcnow() > valid_until:
            raise SubmitExpired(self.name, f"submit {client_order_id} received after its valid_until")
        if len(self._accepting) >= self.max_accepting:
            raise VenueUnavailable(self.name, f"{self.max_accepting} submits already wait for the journal")
        base, quote, side, amount_in, limit_price = swap
        try:  # a swap beyond the bounds now is not accepted (peek: no random draw, seeded runs stay the same)
            self.pools.peek(base, quote).preview(base, quote, side, amount_in)
        except SwapRefused as exc:
            raise VenueRejected(self.name, str(exc)) from None
        receipt = SubmitReceipt(
            venue=self.name,
            client_order_id=client_order_id,
            tx_hash=tx_hash(self.seed, self.name, client_order_id),
            base=base,
            quote=quote,
            side=side,
            amount_in=amount_in,
            limit_price=limit_price,
            accepted_at=self._clock.utcnow(),
            valid_until=valid_until,
        )
        now = self._clock.now()
        due = now + self._draw(self.execution_latency_s)
        self.order_ids.claim(client_order_id, self.name)
        try:
            future = self.ledger.accept(
                receipt,
                visible_at=now + self.status_delay_s,
                on_durable=lambda _: self._due.schedule(client_order_id, due),  # only once it is on disk
            )
        except JournalError as exc:  # the journal is closed: nothing was written
            self.order_ids.release(client_order_id, self.name)
            raise VenueUnavailable(self.name, f"{exc}: not accepted") from None
        self._accepting[client_order_id] = future

        def done(f: asyncio.Future[SwapRecord]) -> None:
            del self._accepting[client_order_id]
            if f.cancelled() or f.exception() is not None:  # not accepted: the id is free again
                self.order_ids.release(client_order_id, self.name)

        if future.done():  # no journal: accepted already, nothing waits
            done(future)
        else:
            future.add_done_callback(done)
        return future

    def _resume(self) -> None:
        """After a replay: claim the journal's ids, resume pricing where its swaps left the pools (drifted
        over the downtime), and settle the swaps still pending as soon as the venue runs."""
        now, wall = self._clock.now(), self._clock.utcnow()
        for listed, at in self.ledger.listings.values():
            if self.pools.lists(listed.token_a, listed.token_b):
                log.warning(
                    "%s: journaled listing %s/%s is listed anyway", self.name, listed.token_a, listed.token_b
                )
                continue
            self.pools.add(listed, now - max(0.0, (wall - at).total_seconds()))
        for state, at in self.ledger.pool_states.values():
            try:
                restored = self.pools.restore(state, touched=now - max(0.0, (wall - at).total_seconds()))
            except SwapRefused as exc:  # a journal from before the bounds drained it: not a pair lost forever
                log.warning("%s: journaled %s: not restored, the pool resumes as listed", self.name, exc)
                continue
            if not restored:
                log.warning(
                    "%s: journaled pool %s/%s is not listed now", self.name, state.token_a, state.token_b
                )
        for record in self.ledger.records():
            self.order_ids.restore(record.receipt.client_order_id, self.name)
            if record.state == "pending":
                self._due.schedule(record.receipt.client_order_id, now)

    async def _settle_due(self, client_order_ids: list[str]) -> None:
        """Settle the swaps due now as one journal batch, then apply them (records, pools, notifications)."""
        now, at = self._clock.now(), self._clock.utcnow()
        shadows: dict[tuple[str, str], Pool] = {}  # the batch's pools: nothing real moves before the write
        batch: list[Settlement] = []
        for client_order_id in client_order_ids:
            record = self.ledger.get(client_order_id)
            if record is not None and record.state == "pending":
                batch.append(self._price(record, shadows, now, at))
        if not batch:
            return
        moved = [shadows[(s.pool.token_a, s.pool.token_b)] for s in batch if s.pool is not None]
        try:
            await self.ledger.settle(batch, on_durable=lambda: self._settled(batch, moved))
        except JournalError as exc:
            log.error(
                "%s: %d settlements not journaled (%s); retrying in %.0f s",
                self.name,
                len(batch),
                exc,
                SETTLE_RETRY_S,
            )
            for s in batch:
                self._due.schedule(s.record.receipt.client_order_id, now + SETTLE_RETRY_S)

    def _price(
        self, record: SwapRecord, shadows: dict[tuple[str, str], Pool], now: float, at: datetime
    ) -> Settlement:
        """How a due swap ends, priced on the batch's copy of its pool (which then carries its fill)."""
        r = record.receipt
        try:
            if r.valid_until is not None and at > r.valid_until:  # like a transaction whose blockhash expired
                return Settlement(record, "failed", at, reason=EXPIRED)
            if self._fault(self.execution_failure_rate):
                return Settlement(
                    record, "failed", at, reason=f"venue error: {self._faults.choice(VENUE_ERRORS)}"
                )
            real = self.pools.pool(r.base, r.quote, now)
            key = (real.token_a, real.token_b)
            pool = shadows.get(key)
            if pool is None:
                pool = shadows[key] = real.copy()
            try:
                fill = pool.preview(r.base, r.quote, r.side, r.amount_in)
            except SwapRefused as exc:  # within bounds at its submit, not on the pool as it is now
                return Settlement(record, "failed", at, reason=f"rejected: {exc}")
            price = fill.price * (1 - self.adverse_move if r.side == "sell" else 1 + self.adverse_move)
            if price < r.limit_price if r.side == "sell" else price > r.limit_price:
                op = "<" if r.side == "sell" else ">"
                reason = f"slippage exceeded: executed {price:.8g} {op} limit {r.limit_price:.8g}"
                return Settlement(record, "failed", at, reason=reason)
            pool.execute(r.base, r.quote, r.side, fill)
            amount_out = fill.amount_out
            if self.adverse_move:
                amount_out = r.amount_in * price if r.side == "sell" else r.amount_in / price
            return Settlement(record, "confirmed", at, price, amount_out, pool=pool.state())
        except Exception as exc:  # a bug must not leave the swap pending forever: fail it, loudly
            log.exception("settling %s on %s", r.client_order_id, self.name)
            return Settlement(record, "failed", at, reason=f"venue internal error: {exc!r}")

    def _settled(self, batch: list[Settlement], moved: list[Pool]) -> None:
        """The batch is durable: move the real pools to where it left them, then tell everyone."""
        for pool in moved:
            self.pools.restore(pool.state())
        if self._market:
            at = self._clock.utcnow()
            for key in dict.fromkeys((p.token_a, p.token_b) for p in moved):  # each moved pool once
                self._announce(self.pools.peek(*key), "swap", at)
        for s in batch:
            status = s.record.status()
            for callback in list(self._listeners):
                try:
                    callback(status)
                except Exception:
                    log.exception("on_settled callback failed for %s", status.client_order_id)
            for future in self._waiters.pop(status.client_order_id, ()):
                if not future.done():
                    future.set_result(status)

    def _fault(self, rate: float) -> bool:
        return rate > 0.0 and self._faults.random() < rate

    def _draw(self, latency: tuple[float, float]) -> float:
        low, high = latency
        return low if low == high else self._latency_rng.uniform(low, high)

    async def _delay(self, latency: tuple[float, float]) -> None:
        if latency[1] > 0:
            await self._clock.sleep(self._draw(latency))


def _latency(value: Latency) -> tuple[float, float]:
    low, high = value if isinstance(value, tuple) else (value, value)
    if not 0 <= low <= high:
        raise ValueError(f"latency must be s or (low, high) with 0 <= low <= high, got {value!r}")
    return float(low), float(high)


def _rate(label: str, rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{label} must be a probability within 0..1, got {rate}")
    return rate
