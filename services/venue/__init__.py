"""Trading venues behind one interface (`Venue`): the simulated Raydium and Meteora, in process or over HTTP.

Import what callers need from here; `simulator`, `server` and `client` are the implementations.
"""

from .interface import (
    Side,
    SubmitOutcomeUnknown,
    SubmitReceipt,
    SwapState,
    SwapStatus,
    Venue,
    VenueError,
    VenueQuote,
    VenueRejected,
    VenueUnavailable,
)

__all__ = [
    "Side",
    "SubmitOutcomeUnknown",
    "SubmitReceipt",
    "SwapState",
    "SwapStatus",
    "Venue",
    "VenueError",
    "VenueQuote",
    "VenueRejected",
    "VenueUnavailable",
]
