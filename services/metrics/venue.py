"""The simulated venue's metrics: quotes, submits and settlements per venue."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Counter

from services.venue.interface import SubmitOutcomeUnknown, SwapStatus, VenueRejected, VenueUnavailable

QUOTES = Counter("oee_venue_quotes", "Quote calls answered, by venue and outcome", ["venue", "outcome"])
SUBMITS = Counter("oee_venue_submits", "Submit calls answered, by venue and outcome", ["venue", "outcome"])
SETTLEMENTS = Counter("oee_venue_settlements", "Swaps settled, by venue and final state", ["venue", "state"])

_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (VenueUnavailable, "unavailable"),
    (SubmitOutcomeUnknown, "outcome_unknown"),
    (VenueRejected, "rejected"),
)


@contextlib.contextmanager
def counted(counter: Counter, venue: str) -> Iterator[None]:
    """Count one call of `counter` for `venue`: ok, or the outcome its exception stands for."""
    try:
        yield
    except BaseException as exc:
        outcome = next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "error")
        counter.labels(venue, outcome).inc()
        raise
    counter.labels(venue, "ok").inc()


def settled(status: SwapStatus) -> None:
    """An `on_settled` callback: count a terminal settlement."""
    if status.terminal:
        SETTLEMENTS.labels(status.venue, status.state).inc()
