"""The landing deadline: what a status look-up of a submitted swap means, before and after its deadline.

Like a Solana transaction whose blockhash expired, a swap submitted with `valid_until` can no longer land
once that time has passed: the venue refuses it. So an uncertain swap (its submit reply lost, or the venue
down) is looked up, never guessed:

- `confirmed` / `failed`: that is the order's end;
- `pending`: accepted, it will settle; wait for the settlement;
- `unknown` before the deadline: the venue never got it; submit it again (same client order id, so it
  cannot execute twice);
- `unknown` after the deadline, but within `grace` of it: the venue may not show a swap it accepted yet
  (status visibility delay); look again when the grace is over;
- `unknown` when asked at least `grace` after the deadline: it never landed and never will: `expired`.

A swap submitted before deadlines existed (`valid_until` None) has none: `unknown` is always resubmitted.
Pure: the caller passes the time the look-up was *sent* (what the venue's answer can speak for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from services.router.flow import Tracked
from services.venue.interface import SwapStatus

Action = Literal["settle", "wait", "resubmit", "expire"]


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    look_at: float | None = None  # "wait": when to look the swap up next (epoch s)
    why: str = ""  # "expire": for the failure reason


def judge(tracked: Tracked, status: SwapStatus, asked_at: float, grace_s: float, recheck_s: float) -> Verdict:
    """What to do with `status`, the venue's answer to a look-up sent at `asked_at` (epoch s)."""
    if status.terminal:
        return Verdict("settle")
    if status.state == "pending":
        return Verdict("wait", asked_at + recheck_s)
    deadline = tracked.valid_until
    if deadline is None or asked_at < deadline:
        return Verdict("resubmit")
    if asked_at < deadline + grace_s:
        return Verdict("wait", deadline + grace_s)
    return Verdict(
        "expire",
        why=(
            f"the swap did not land on {status.venue} by its valid_until {_iso(deadline)}; asked at "
            f"{_iso(asked_at)}, {asked_at - deadline:.1f} s after it, the venue had never executed it"
        ),
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
