"""What the router may know about a trading venue: quotes, idempotent submits, status by client order id.

A real Solana adapter (Raydium or Meteora through an RPC node) implements `Venue`; the simulator and the HTTP
client implement it today, and nothing outside `services.venue` knows which one it talks to.

Conventions that every implementation keeps:

- **Prices are quote-token per base-token, net of fees**, whatever the side. SOL/USDC at 149.9 means one SOL
  for 149.9 USDC after the venue's fee. A seller wants it high, a buyer wants it low.
- **`amount_in` is what the trader gives up.** `side="sell"`: sell `amount_in` of *base* for quote
  (`amount_out` is quote). `side="buy"`: spend `amount_in` of *quote* to buy base (`amount_out` is base).
  This mirrors a swap instruction (exact input), so a market order never needs a reverse quote.
- **`limit_price`** is the worst acceptable executed price: a sell fails if executed < limit, a buy fails if
  executed > limit (the seed calls it `minAcceptablePrice` for both sides).
- **A submit is idempotent by `client_order_id`**: a second submit returns the first receipt (same tx hash)
  and never executes twice. The swap is accepted at once and settles later; `status` reads the outcome.

Errors say what the caller may do next (P4: an unknown outcome is reconciled, never guessed):
`VenueUnavailable` — nothing was accepted, retry is safe; `SubmitOutcomeUnknown` — the swap may have been
accepted, read `status` first (if it is `unknown`, resubmitting the *same* client order id is safe);
`VenueRejected` — the request itself is wrong, retrying cannot help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

Side = Literal["buy", "sell"]
SwapState = Literal["unknown", "pending", "confirmed", "failed"]
SIDES: tuple[Side, ...] = ("buy", "sell")


class VenueError(Exception):
    """Base of every error a venue raises; carries the venue's name for logs and events."""

    def __init__(self, venue: str, reason: str) -> None:
        super().__init__(f"{venue}: {reason}")
        self.venue = venue
        self.reason = reason


class VenueUnavailable(VenueError):
    """The call was not served (down, overloaded, timed out before sending): transient, safe to retry."""


class SubmitOutcomeUnknown(VenueError):
    """The submit may have been accepted but its reply was lost: look up `status`, never resubmit blindly."""


class VenueRejected(VenueError):
    """The request is invalid for this venue (unknown pair, bad amount): retrying it cannot help."""


class SubmitExpired(VenueRejected):
    """The submit arrived after its `valid_until` (like a Solana transaction whose blockhash expired): the
    venue refused it and will never execute it. Nothing was accepted; the same swap can no longer land."""


class SubmitConflict(VenueRejected):
    """The client order id is already taken by a different swap (other parameters, or another venue of the
    same chain): refused, and the first swap is left as it is. One client order id, at most one swap."""


MAX_STATUS_BATCH = 1000
"""The most client order ids a caller puts in one `status_many` call (a venue may accept more)."""


@dataclass(frozen=True, slots=True)
class VenueQuote:
    """An indicative price for one swap of `amount_in`, as the venue would execute it right now."""

    venue: str
    base: str
    quote: str
    side: Side
    price: float  # quote per base, net of fees
    fee_bps: float
    amount_in: float  # base for a sell, quote for a buy
    amount_out: float  # quote for a sell, base for a buy
    price_impact_bps: float  # rate lost to the swap's size alone, fee excluded
    quoted_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class SubmitReceipt:
    """Proof that the venue accepted a swap; the same client order id always yields the same receipt."""

    venue: str
    client_order_id: str
    tx_hash: str
    base: str
    quote: str
    side: Side
    amount_in: float
    limit_price: float
    accepted_at: datetime  # UTC
    valid_until: datetime | None = None  # UTC; the venue refuses to execute the swap after it


@dataclass(frozen=True, slots=True)
class SwapStatus:
    """Where a swap stands. `unknown`: never accepted (or not visible yet); `pending`: accepted, not
    settled; `confirmed`: executed at `executed_price` for `amount_out`; `failed`: settled without a fill,
    `reason` says why (slippage or a venue error)."""

    venue: str
    client_order_id: str
    state: SwapState
    tx_hash: str | None = None
    executed_price: float | None = None
    amount_out: float | None = None
    reason: str | None = None
    settled_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in ("confirmed", "failed")


@runtime_checkable
class Venue(Protocol):
    """A venue as the router uses it; see the module docstring for the conventions."""

    name: str

    async def quote(self, base: str, quote: str, side: Side, amount_in: float) -> VenueQuote:
        """Price a swap now. Raises `VenueUnavailable` (retry) or `VenueRejected` (bad pair or amount)."""
        ...

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
        """Accept a swap without waiting for it to execute. Idempotent by `client_order_id`: a repeat with
        the same parameters returns the first receipt. Raises `VenueUnavailable` (not accepted, retry is
        safe), `SubmitOutcomeUnknown` (reconcile by `status`), `SubmitExpired` (received after
        `valid_until`: never executed), `SubmitConflict` (the id is taken by another swap) or
        `VenueRejected`."""
        ...

    async def status(self, client_order_id: str) -> SwapStatus:
        """The swap's state by client order id; `unknown` if the venue never accepted it."""
        ...

    async def status_many(self, client_order_ids: Sequence[str]) -> list[SwapStatus]:
        """`status` for many ids in one call, in the same order (reconciliation after a restart)."""
        ...

    async def aclose(self) -> None:
        """Release connections or background tasks; the venue is unusable afterwards."""
        ...
