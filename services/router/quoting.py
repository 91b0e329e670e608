"""Asking every venue for a price, concurrently, each under its own timeout; the pure step that decides
(`flow.quoted`) gets the quotes that came back and, for the venues that did not quote, why."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from services.router import flow
from services.router.containment import contain
from services.router.flow import Tracked
from services.router.options import RouterOptions
from services.venue.interface import Venue, VenueError, VenueQuote, VenueRejected


class Quoter:
    def __init__(self, venues: Mapping[str, Venue], options: RouterOptions) -> None:
        self.venues = venues
        self.options = options

    async def steps(self, orders: Sequence[Tracked]) -> list[flow.Step]:
        """Quote each order on every venue and turn the answers into its next step (timed when they are in:
        the swap's deadline runs from its submitted event)."""
        if not orders:
            return []
        answers = await asyncio.gather(*(self.quotes(t) for t in orders))
        at = datetime.now(UTC)
        opts = self.options
        steps = []
        for t, (quotes, errors, refused) in zip(orders, answers, strict=True):
            quoted = partial(
                flow.quoted, t, quotes, errors, at, opts.backoff, opts.landing_deadline_s, refused=refused
            )
            step = contain(t, at, quoted, "routing")  # a quote that breaks the step fails this order only
            if step is not None:
                steps.append(step)
        return steps

    async def quotes(self, tracked: Tracked) -> tuple[list[VenueQuote], list[str], bool]:
        """Every venue's quote, or only those of the venues a trigger named (`tracked.venues`); for the
        venues without one, why; and whether every venue asked refused the request outright (a rejection,
        not an outage or a timeout)."""
        req = tracked.request
        timeout = self.options.quote_timeout_s
        names = [n for n in self.venues if tracked.venues is None or n in tracked.venues]
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self.venues[name].quote(req.base_token, req.quote_token, req.side, req.amount_in),
                    timeout,
                )
                for name in names
            ),
            return_exceptions=True,
        )
        quotes: list[VenueQuote] = []
        errors: list[str] = []
        refusals = 0
        for name, result in zip(names, results, strict=True):
            if isinstance(result, VenueQuote):
                problem = unusable(result)
                if problem:
                    errors.append(f"{name}: unusable quote ({problem})")
                else:
                    quotes.append(result)
            elif isinstance(result, TimeoutError):
                errors.append(f"{name}: no quote within {timeout:g} s")
            elif isinstance(result, VenueError):
                errors.append(f"{name}: {result.reason}")
                refusals += isinstance(result, VenueRejected)
            elif isinstance(result, BaseException):
                errors.append(f"{name}: {type(result).__name__}: {result}")
        return quotes, errors, bool(names) and refusals == len(names)


def unusable(quote: VenueQuote) -> str:
    """What makes a venue's quote unusable ("" when nothing): a price or an amount that is not a finite
    positive number (a venue overflowing on a huge swap answers inf, or null through JSON), or a fee or
    impact that is not finite. Such a quote counts as that venue's failure to quote, not as a price."""
    for name in ("price", "amount_in", "amount_out"):
        value = getattr(quote, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            return f"{name} {value!r}"
    for name in ("fee_bps", "price_impact_bps"):
        value = getattr(quote, name)
        if not (isinstance(value, int | float) and math.isfinite(value)):
            return f"{name} {value!r}"
    return ""
